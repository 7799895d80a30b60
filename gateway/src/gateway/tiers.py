"""The tier table (:mod:`chassis.tiers`) with the gateway's own check: every limit parses.

The table is shared with library-svc; only the gateway counts rate limits and the daily
AI quota, so only it knows what a valid ``limits`` string is (``60/minute``,
``1000/hour;100/minute``).
"""

from __future__ import annotations

from pathlib import Path

from limits import parse_many

from chassis.tiers import Tier, Tiers, TiersError
from chassis.tiers import load_tiers as load_tier_table

__all__ = ["Tier", "Tiers", "TiersError", "load_tiers", "parsable_limit"]


def parsable_limit(value: str) -> str:
    try:
        parsed = parse_many(value)
    except ValueError as error:
        raise ValueError(f"not a rate limit such as '60/minute': {error}") from None
    if not parsed:
        raise ValueError("not a rate limit such as '60/minute'")
    return value


def load_tiers(path: Path | None = None) -> Tiers:
    """The shared tier table, with every rate limit and quota parsable by ``limits``."""
    tiers = load_tier_table(path)
    source = str(path) if path is not None else "the packaged tiers.yaml"
    for name, tier in tiers.tiers.items():
        for field in ("rate_limit", "ai_rate_limit", "ai_daily_quota"):
            try:
                parsable_limit(getattr(tier, field))
            except ValueError as error:
                raise TiersError(f"invalid tiers file {source}: {name}.{field}: {error}") from None
    return tiers
