from __future__ import annotations

from pathlib import Path

import yaml

from chassis.disclaimer import disclaimer_for, disclaimers

PRESETS = Path(__file__).resolve().parents[2] / "ai-svc/src/ai_svc/presets.yaml"


def test_every_language_on_offer_has_its_own_disclaimer() -> None:
    offered = [item["code"] for item in yaml.safe_load(PRESETS.read_text())["languages"]]
    statements = {disclaimer_for(code).statement for code in offered}

    assert set(offered) <= set(disclaimers())
    assert len(statements) == len(offered)


def test_regional_and_unknown_languages_fall_back_sensibly() -> None:
    assert disclaimer_for("ko-KR") == disclaimers()["ko"]
    assert disclaimer_for("xx") == disclaimers()["en"]
    assert disclaimer_for(None) == disclaimers()["en"]
