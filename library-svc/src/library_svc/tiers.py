"""Tier limits, read once from the tiers YAML (``TIERS_FILE``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

TIERS = ("anonymous", "free", "pro")


@dataclass(frozen=True)
class TierLimits:
    history_size: int
    storage_bytes: int

    def public(self) -> dict[str, int]:
        return {"history_size": self.history_size, "storage_bytes": self.storage_bytes}


def load_tiers(path: Path) -> dict[str, TierLimits]:
    """Every tier with both limits as whole numbers, or a start-up error naming the file."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise SystemExit(f"invalid setting TIERS_FILE: {path}: {error}") from None
    tiers: dict[str, TierLimits] = {}
    for name in TIERS:
        entry = raw.get(name) if isinstance(raw, dict) else None
        try:
            tiers[name] = TierLimits(
                history_size=int(entry["history_size"]), storage_bytes=int(entry["storage_bytes"])
            )
        except (TypeError, KeyError, ValueError):
            raise SystemExit(
                f"invalid setting TIERS_FILE: {path}: tier {name!r} needs whole-number "
                "history_size and storage_bytes"
            ) from None
    return tiers
