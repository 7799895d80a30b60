"""A bad setting stops the service at start, with a message that names the variable."""

from __future__ import annotations

import subprocess

import pytest

from chassis.settings import ServiceSettings, SettingsError, load_settings
from testbed.processes import BIN, ROOT, base_env, free_port


class ExampleSettings(ServiceSettings):
    max_upload_bytes: int = 10


def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_UPLOAD_BYTES", "ten megabytes")
    with pytest.raises(SettingsError) as caught:
        load_settings(ExampleSettings)
    assert "MAX_UPLOAD_BYTES" in str(caught.value)


def test_values_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_UPLOAD_BYTES", "1234")
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    settings = load_settings(ExampleSettings)
    assert settings.max_upload_bytes == 1234
    assert settings.log_level == "DEBUG"


@pytest.mark.integration
@pytest.mark.parametrize(
    ("service", "variable", "value"),
    [
        ("upload-svc", "MAX_UPLOAD_BYTES", "lots"),
        ("gateway", "LOG_LEVEL", "CHATTY"),
        ("ai-svc", "SENTRY_TRACES_SAMPLE_RATE", "7"),
    ],
)
def test_gunicorn_refuses_to_start_with_a_bad_setting(
    service: str, variable: str, value: str
) -> None:
    env = base_env(PORT=str(free_port()), METRICS_PORT=str(free_port()), **{variable: value})
    result = subprocess.run(
        [str(BIN / "gunicorn"), "-c", str(ROOT / service / "gunicorn.conf.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert f"invalid setting {variable}" in result.stdout + result.stderr
