"""The tier table, as data: what an anonymous, a free and a pro caller may do.

One table for every service: the gateway reads the rate limits and the daily AI quota
from it, library-svc the history size and the storage quota, so the numbers a person
is told and the numbers enforced cannot differ. It lives in ``tiers.yaml`` next to this
module (or ``TIERS_FILE``), validated at start: a bad file stops the service with a
message naming ``TIERS_FILE``. A signed-in request's tier comes from the token's
``tier`` custom claim (library-svc keeps it in step with purchases), ``free`` when there
is none or it names no known tier.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from chassis.caller import ANONYMOUS_TIER, SIGNED_IN_DEFAULT_TIER

REQUIRED_TIERS = (ANONYMOUS_TIER, SIGNED_IN_DEFAULT_TIER, "pro")


class TiersError(ValueError):
    """The tiers file is missing or invalid: no service may start with it."""


class Tier(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rate_limit: str = Field(min_length=1, description="every public API call, all routes together")
    ai_rate_limit: str = Field(
        min_length=1, description="calls that cost an AI call, every attempt"
    )
    ai_daily_quota: str = Field(min_length=1, description="AI calls that delivered ideas")
    history_size: int = Field(ge=0, description="snaps kept in a person's history")
    storage_quota_bytes: int = Field(ge=0, description="bytes of stored photos")


class Tiers(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tiers: dict[str, Tier]

    @field_validator("tiers")
    @classmethod
    def _the_three(cls, value: dict[str, Tier]) -> dict[str, Tier]:
        missing = [name for name in REQUIRED_TIERS if name not in value]
        if missing:
            raise ValueError(f"missing tier(s): {', '.join(missing)}")
        return value

    def get(self, name: str) -> Tier:
        return self.tiers[name]

    def __getitem__(self, name: str) -> Tier:
        return self.tiers[name]

    def signed_in_tier(self, claim: object) -> str:
        """The tier a token's ``tier`` claim names; ``free`` for none or an unknown one."""
        if isinstance(claim, str) and claim in self.tiers and claim != ANONYMOUS_TIER:
            return claim
        return SIGNED_IN_DEFAULT_TIER

    def with_anonymous(self, **overrides: str | None) -> Tiers:
        """The table with the anonymous tier's limits replaced where a setting gives one."""
        given = {name: value for name, value in overrides.items() if value}
        if not given:
            return self
        tiers = dict(self.tiers)
        tiers[ANONYMOUS_TIER] = tiers[ANONYMOUS_TIER].model_copy(update=given)
        return Tiers(tiers=tiers)


def load_tiers(path: Path | None = None) -> Tiers:
    """The tiers from ``path`` (``TIERS_FILE``) or the packaged default, validated."""
    source = str(path) if path is not None else "the packaged tiers.yaml"
    try:
        if path is None:
            text = resources.files("chassis").joinpath("tiers.yaml").read_text(encoding="utf-8")
        else:
            text = path.read_text(encoding="utf-8")
        return Tiers.model_validate(yaml.safe_load(text))
    except (OSError, yaml.YAMLError, ValidationError) as error:
        raise TiersError(f"invalid tiers file {source}: {error}") from None
