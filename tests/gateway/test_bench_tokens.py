"""The sign-in benchmark runs end to end (smoke mode), so it cannot rot between runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.tokens import run

pytestmark = pytest.mark.integration


def test_tokens_bench_smoke(tmp_path: Path) -> None:
    result = run(tmp_path, smoke=True)
    json.dumps(result)
    figures = result["figures"]
    assert figures["verify_ms"] > 0
    assert figures["local_store_hit_ms"] > 0
    assert figures["cpu_ms_per_request"]["anonymous"] > 0
    assert figures["cpu_ms_per_request"]["signed_in"] > 0
    for row in result["table"]:
        assert {"metric", "value", "goal", "met"} <= row.keys()
