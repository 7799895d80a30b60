"""Reading the shared smoke run's result file (see conftest.py)."""

from __future__ import annotations

from typing import Any


def scenario(smoke: dict[str, Any], name: str) -> dict[str, Any]:
    """The result of one scenario of the shared run, failing with its traceback if any."""
    entry = smoke["document"]["scenarios"][name]
    assert entry["status"] == "ok", (
        f"{name}: {entry['status']}: {entry.get('error')}\n{entry.get('traceback', '')}"
    )
    return entry["result"]
