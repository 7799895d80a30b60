"""ai-svc settings (environment variables of the same names)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from chassis.settings import ServiceSettings


class AiSettings(ServiceSettings):
    service_name: str = "ai-svc"
    upload_svc_url: str = "http://127.0.0.1:8081"
    upload_connect_timeout_seconds: float = Field(default=1.0, gt=0)
    upload_read_timeout_seconds: float = Field(default=10.0, gt=0)
    preview_long_side: int = Field(default=768, ge=128, le=4096)
    presets_file: Path | None = Field(default=None, description="presets YAML; packaged default")
    gemini_api_key: SecretStr | None = None
    gemini_model: str = "gemini-2.5-flash"
