"""The prompt's budget and schema, and the settings that shape ai-svc."""

from __future__ import annotations

import pytest

from ai_svc.presets import Preset, load_catalogue
from ai_svc.prompts import JSON_OVERHEAD_TOKENS, PromptRequest, build_prompt, response_schema
from ai_svc.settings import AiSettings
from chassis.settings import SettingsError, load_settings


def prompt(strict: bool = False, thinking: int | None = 512, **fields: object) -> PromptRequest:
    values = {"template": "story", "tone": "poetic", "language": "ja", "count": 4, **fields}
    return build_prompt(
        Preset(**values),  # type: ignore[arg-type]
        load_catalogue(),
        tokens_per_idea=300,
        thinking_budget=thinking,
        strict=strict,
    )


def test_the_output_budget_includes_the_thinking_budget() -> None:
    request = prompt(thinking=512)
    answer = 4 * 300 + JSON_OVERHEAD_TOKENS
    assert request.budget.thinking_budget == 512
    assert request.budget.max_output_tokens == answer + 512


def test_dynamic_thinking_gets_an_allowance_and_strict_turns_thinking_off() -> None:
    dynamic = prompt(thinking=None)
    strict = prompt(strict=True)
    answer = 4 * 300 + JSON_OVERHEAD_TOKENS
    assert dynamic.budget.thinking_budget is None
    assert dynamic.budget.max_output_tokens > answer + 1000
    assert strict.budget.thinking_budget == 0
    assert strict.budget.max_output_tokens == answer
    assert "Keep each body under" in strict.text
    assert "Keep each body under" not in prompt().text


def test_the_prompt_names_template_tone_language_and_count() -> None:
    text = prompt().text
    assert "very short story" in text
    assert "lyrical" in text
    assert "Japanese" in text
    assert "日本語" in text
    assert "exactly 4" in text


def test_the_schema_asks_for_exactly_count_ideas() -> None:
    schema = response_schema(2)
    ideas = schema["properties"]["ideas"]
    assert (ideas["minItems"], ideas["maxItems"]) == (2, 2)
    assert ideas["items"]["required"] == ["title", "body", "hashtags"]


def test_settings_defaults_and_the_per_worker_share_of_the_pod_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("GEMINI_API_KEY", "GEMINI_MODEL", "GEMINI_MAX_IN_FLIGHT", "WEB_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    settings = AiSettings()
    assert settings.gemini_enabled is False
    assert settings.gemini_model == "gemini-2.5-flash"
    assert settings.gemini_api_version == "v1beta"
    assert settings.upstream_slots_per_worker == 64  # 128 per pod over 2 workers
    assert AiSettings(gemini_max_in_flight=10, web_concurrency=3).upstream_slots_per_worker == 4


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    monkeypatch.setenv("GEMINI_FALLBACK_MODEL", "")
    monkeypatch.setenv("GEMINI_API_VERSION", "v1")
    monkeypatch.setenv("GEMINI_TIMEOUT_SECONDS", "7.5")
    settings = load_settings(AiSettings)
    assert settings.gemini_enabled
    assert settings.gemini_fallback_model is None
    assert settings.gemini_api_version == "v1"
    assert settings.gemini_timeout_seconds == 7.5


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GEMINI_MODEL", "bad model name"),
        ("GEMINI_API_VERSION", "latest"),
        ("GEMINI_TIMEOUT_SECONDS", "0"),
        ("GEMINI_MAX_ATTEMPTS", "0"),
        ("GEMINI_FALLBACK_MODEL", "no spaces allowed"),
    ],
)
def test_a_bad_setting_stops_the_start_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError):
        load_settings(AiSettings)
    assert variable in capsys.readouterr().err
