"""Tiers as data: what an anonymous, a free and a pro caller may do.

The table lives in ``tiers.yaml`` (or ``TIERS_FILE``) so that product changes to the
limits are a data change, validated at start. A signed-in request's tier comes from the
token's ``tier`` custom claim (library-svc keeps it in step with purchases), ``free``
when there is none or it names no known tier: no database call on the hot path.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from limits import parse_many
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from chassis.caller import ANONYMOUS_TIER, SIGNED_IN_DEFAULT_TIER

REQUIRED_TIERS = (ANONYMOUS_TIER, SIGNED_IN_DEFAULT_TIER, "pro")


class TiersError(ValueError):
    """The tiers file is missing or invalid: the gateway must not start with it."""


def parsable_limit(value: str) -> str:
    try:
        parsed = parse_many(value)
    except ValueError as error:
        raise ValueError(f"not a rate limit such as '60/minute': {error}") from None
    if not parsed:
        raise ValueError("not a rate limit such as '60/minute'")
    return value


class Tier(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rate_limit: str = Field(description="every public API call, all routes together")
    ai_rate_limit: str = Field(description="calls that cost an AI call, every attempt")
    ai_daily_quota: str = Field(description="AI calls that delivered ideas")
    history_size: int = Field(ge=0, description="snaps kept in a person's history")
    storage_quota_bytes: int = Field(ge=0, description="bytes of stored photos")

    @field_validator("rate_limit", "ai_rate_limit", "ai_daily_quota")
    @classmethod
    def _parsable(cls, value: str) -> str:
        return parsable_limit(value)


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
            text = resources.files("gateway").joinpath("tiers.yaml").read_text(encoding="utf-8")
        else:
            text = path.read_text(encoding="utf-8")
        return Tiers.model_validate(yaml.safe_load(text))
    except (OSError, yaml.YAMLError, ValidationError) as error:
        raise TiersError(f"invalid tiers file {source}: {error}") from None
