"""Typed settings read from the environment, shared by every service.

A service subclasses :class:`ServiceSettings` with its own fields and loads it with
:func:`load_settings`, which turns a validation failure into one readable line that
names the environment variable, so a bad deploy fails at start, not at first request.
"""

from __future__ import annotations

import sys
from typing import Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class ServiceSettings(BaseSettings):
    """Settings every service has. Field names are the environment variable names."""

    model_config = SettingsConfigDict(
        env_prefix="", case_sensitive=False, extra="ignore", frozen=True
    )

    service_name: str = "service"
    environment: str = Field(default="development", description="deployment environment")
    release: str = Field(default="dev", description="version tag shown in Sentry and logs")
    log_level: LogLevel = "INFO"
    log_format: Literal["json", "console"] = "json"

    sentry_dsn: SecretStr | None = None
    sentry_traces_sample_rate: float = Field(default=0.0, ge=0.0, le=1.0)

    otel_sdk_disabled: bool = False
    otel_exporter_otlp_endpoint: str | None = None

    metrics_enabled: bool = True
    readiness_timeout_seconds: float = Field(default=2.0, gt=0)


SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


class SettingsError(SystemExit):
    """Raised when the environment holds an invalid setting; its text names the variable."""


def describe_validation_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        variable = "_".join(str(part) for part in item["loc"]).upper() or "<settings>"
        lines.append(f"invalid setting {variable}: {item['msg']}")
    return "; ".join(lines)


def load_settings(cls: type[SettingsT], **overrides: object) -> SettingsT:
    """Build settings from the environment (plus explicit overrides) or stop the process."""
    try:
        return cls(**overrides)
    except ValidationError as error:
        message = describe_validation_error(error)
        print(message, file=sys.stderr, flush=True)
        raise SettingsError(message) from None
