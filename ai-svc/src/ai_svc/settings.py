"""ai-svc settings (environment variables of the same names).

The Gemini provider is on when ``GEMINI_API_KEY`` is set. Every ideas request is bound
by one overall deadline (``AI_DEADLINE_SECONDS``) that covers fetching the preview,
waiting for an upstream slot, every attempt and every backoff sleep.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator

from chassis.settings import ServiceSettings

MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class AiSettings(ServiceSettings):
    service_name: str = "ai-svc"
    upload_svc_url: str = "http://127.0.0.1:8081"
    upload_connect_timeout_seconds: float = Field(default=1.0, gt=0)
    upload_read_timeout_seconds: float = Field(default=10.0, gt=0)
    preview_long_side: int = Field(default=768, ge=128, le=4096)
    ai_deadline_seconds: float = Field(
        default=30.0, gt=0, le=600, description="overall time one ideas request may take"
    )
    ai_stream_heartbeat_seconds: float = Field(
        default=5.0, gt=0, le=60, description="comment line this often while the model thinks"
    )
    local_stream_pace_seconds: float = Field(
        default=0.25, ge=0, le=5, description="local provider: pause between streamed ideas"
    )
    presets_file: Path | None = Field(default=None, description="presets YAML; packaged default")

    gemini_api_key: SecretStr | None = None
    gemini_model: str = Field(default="gemini-2.5-flash", pattern=MODEL_NAME)
    gemini_fallback_model: str | None = Field(
        default="gemini-2.5-flash-lite", description="empty disables the fallback"
    )
    gemini_base_url: str | None = Field(default=None, description="default: Google's endpoint")
    gemini_api_version: str = Field(default="v1beta", pattern=r"^v\d+(alpha|beta)?\d*$")
    gemini_timeout_seconds: float = Field(default=20.0, gt=0, le=600)
    gemini_max_attempts: int = Field(default=3, ge=1, le=10)
    gemini_backoff_base_seconds: float = Field(default=0.5, ge=0)
    gemini_backoff_max_seconds: float = Field(default=8.0, ge=0)
    gemini_min_attempt_seconds: float = Field(default=1.0, ge=0)
    gemini_max_in_flight: int = Field(default=128, ge=1, description="per pod")
    gemini_slot_wait_seconds: float = Field(default=2.0, ge=0)
    gemini_breaker_failures: int = Field(default=5, ge=1)
    gemini_breaker_reset_seconds: float = Field(default=30.0, gt=0)
    gemini_thinking_budget: int | None = Field(default=512, ge=-1, le=32768)
    gemini_output_tokens_per_idea: int = Field(default=300, ge=50, le=4000)
    gemini_temperature: float = Field(default=0.9, ge=0, le=2)

    web_concurrency: int = Field(default=2, ge=1, description="gunicorn workers per pod")
    redis_url: str | None = None
    ai_cache_size: int = Field(default=1024, ge=0, description="in-process entries; 0 disables")
    ai_cache_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=1)
    redis_timeout_seconds: float = Field(default=0.25, gt=0)

    @field_validator("gemini_fallback_model", "gemini_base_url", "redis_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("gemini_fallback_model")
    @classmethod
    def _fallback_name(cls, value: str | None) -> str | None:
        if value is not None and not re.match(MODEL_NAME, value):
            raise ValueError("not a model name")
        return value

    @field_validator("gemini_api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _coherent(self) -> AiSettings:
        if self.gemini_backoff_max_seconds < self.gemini_backoff_base_seconds:
            raise ValueError("GEMINI_BACKOFF_MAX_SECONDS must be at least the base")
        return self

    @property
    def gemini_enabled(self) -> bool:
        return self.gemini_api_key is not None

    @property
    def upstream_slots_per_worker(self) -> int:
        """The pod's bound split over its workers (each worker holds its own semaphore)."""
        return max(1, math.ceil(self.gemini_max_in_flight / self.web_concurrency))
