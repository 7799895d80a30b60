"""gateway settings (environment variables of the same names).

Everything that decides who gets in and how much is configuration, validated at start:
a limit string that ``limits`` cannot parse, an origin that is not an exact origin, or a
wildcard origin together with credentials stops the gateway with a message naming the
variable, instead of surfacing as a 500 or an open door on the first request.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from limits import parse_many
from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from chassis.settings import ServiceSettings

MULTIPART_OVERHEAD_BYTES = 64 * 1024
EXACT_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
EMULATOR_HOST = re.compile(r"^[A-Za-z0-9.-]+:[0-9]{1,5}$")
HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,64}$")

RateLimitStrategy = Literal["fixed-window", "moving-window", "sliding-window-counter"]


class GatewaySettings(ServiceSettings):
    service_name: str = "gateway"

    # Upstreams, and how long each kind of call may take (connect is shared: a service
    # that does not accept a connection within a second is not going to).
    upload_svc_url: str = "http://127.0.0.1:8081"
    ai_svc_url: str = "http://127.0.0.1:8082"
    upstream_connect_timeout_seconds: float = Field(default=1.0, gt=0)
    upload_read_timeout_seconds: float = Field(default=30.0, gt=0)
    fetch_read_timeout_seconds: float = Field(default=10.0, gt=0)
    ai_read_timeout_seconds: float = Field(default=60.0, gt=0)
    stream_heartbeat_seconds: float = Field(
        default=10.0, gt=0, le=60, description="event streams: a comment line this often"
    )
    presets_read_timeout_seconds: float = Field(default=5.0, gt=0)
    upstream_pool_size: int = Field(default=32, ge=1, le=1024)

    # Bodies.
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_json_bytes: int = Field(default=64 * 1024, gt=0)

    # Rate limits and quotas, shared by every replica through Redis when it is set.
    redis_url: str | None = None
    redis_timeout_seconds: float = Field(default=0.25, gt=0, le=10)
    rate_limit_enabled: bool = True
    rate_limit_default: str = "60/minute"
    rate_limit_ai: str = "10/minute"
    ai_daily_quota: str = "100/day"
    rate_limit_strategy: RateLimitStrategy = "fixed-window"
    rate_limit_fail_open: bool = True
    rate_limit_memory_fallback: bool = False
    rate_limit_store_retry_seconds: float = Field(default=1.0, gt=0, le=300)

    # Client identity.
    api_keys_file: Path | None = None
    api_key_header: str = "X-API-Key"
    api_keys_required: bool = False
    trusted_proxy_hops: int = Field(default=0, ge=0, le=10)

    # Browsers.
    cors_allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cors_allow_credentials: bool = False
    cors_max_age_seconds: int = Field(default=600, ge=0, le=86400)
    hsts_max_age_seconds: int = Field(default=31_536_000, ge=0)

    # Idempotency-Key on POSTs.
    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    idempotency_lock_seconds: int = Field(default=120, ge=5)
    idempotency_max_entries: int = Field(default=10_000, ge=10)
    idempotency_max_body_bytes: int = Field(default=256 * 1024, ge=1024)

    # The web app and the public pages. The retention stated on the privacy page is the
    # gateway's own copy of upload-svc's ANONYMOUS_RETENTION_DAYS: set both from one value.
    anonymous_retention_days: int = Field(default=7, ge=1, le=3650)
    provider_fact_ttl_seconds: float = Field(default=300.0, gt=0)
    firebase_web_api_key: str | None = None
    firebase_project_id: str | None = None
    firebase_auth_emulator_host: str | None = None

    @property
    def max_body_bytes(self) -> int:
        return self.max_upload_bytes + MULTIPART_OVERHEAD_BYTES

    @field_validator(
        "firebase_web_api_key", "firebase_project_id", "firebase_auth_emulator_host", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("firebase_auth_emulator_host")
    @classmethod
    def _host_and_port(cls, value: str | None) -> str | None:
        if value is not None and not EMULATOR_HOST.match(value):
            raise ValueError("must be host:port such as 127.0.0.1:9099")
        return value

    @property
    def sign_in_enabled(self) -> bool:
        return bool(self.firebase_web_api_key and self.firebase_project_id)

    @field_validator("rate_limit_default", "rate_limit_ai", "ai_daily_quota")
    @classmethod
    def _parsable_limit(cls, value: str) -> str:
        try:
            parsed = parse_many(value)
        except ValueError as error:
            raise ValueError(f"not a rate limit such as '60/minute': {error}") from None
        if not parsed:
            raise ValueError("not a rate limit such as '60/minute'")
        return value

    @field_validator("cors_allowed_origins", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip().rstrip("/") for item in value.split(",") if item.strip()]
        return value

    @field_validator("cors_allowed_origins")
    @classmethod
    def _exact_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not EXACT_ORIGIN.match(origin):
                raise ValueError(
                    f"{origin!r} is not an exact origin such as https://app.example.com"
                )
        return value

    @field_validator("api_key_header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        if not HEADER_NAME.match(value):
            raise ValueError("must be an HTTP header name")
        return value

    @model_validator(mode="after")
    def _no_wildcard_with_credentials(self) -> GatewaySettings:
        if self.cors_allow_credentials and "*" in self.cors_allowed_origins:
            raise ValueError(
                "CORS_ALLOWED_ORIGINS may not contain '*' when CORS_ALLOW_CREDENTIALS is true"
            )
        if self.api_keys_required and self.api_keys_file is None:
            raise ValueError("API_KEYS_REQUIRED needs API_KEYS_FILE")
        return self
