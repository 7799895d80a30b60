"""The gateway benchmark runs end to end (smoke mode), so it cannot rot between runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.gateway_hop import TARGETS, run

pytestmark = pytest.mark.integration


def test_gateway_hop_smoke(tmp_path: Path) -> None:
    result = run(tmp_path, smoke=True)
    json.dumps(result)  # the bench runner stores it as is
    figures = result["figures"]
    for target in TARGETS:
        assert figures[target]["errors"] == 0, target
        assert figures[target]["rps"] > 0
        assert figures[target]["p99_ms"] >= figures[target]["p50_ms"] > 0
    assert figures["upload_memory"]["rounds"]
    for row in result["table"]:
        assert {"metric", "value", "goal", "met"} <= row.keys()
        assert isinstance(row["met"], bool)
    assert result["inputs"]["request"].startswith("GET /v1/presets")
