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

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import NoDecode

from chassis.settings import ServiceSettings
from gateway.tiers import TiersError, load_tiers, parsable_limit

MULTIPART_OVERHEAD_BYTES = 64 * 1024
EXACT_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
EMULATOR_HOST = re.compile(r"^[A-Za-z0-9.-]+:[0-9]{1,5}$")
HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,64}$")

# Google's x509 certificates for Firebase ID tokens (securetoken@system.gserviceaccount.com).
GOOGLE_CERTS_URL = (
    "https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com"
)

RateLimitStrategy = Literal["fixed-window", "moving-window", "sliding-window-counter"]


class GatewaySettings(ServiceSettings):
    service_name: str = "gateway"

    # Upstreams, and how long each kind of call may take (connect is shared: a service
    # that does not accept a connection within a second is not going to).
    upload_svc_url: str = "http://127.0.0.1:8081"
    ai_svc_url: str = "http://127.0.0.1:8082"
    library_svc_url: str = "http://127.0.0.1:8083"
    upstream_connect_timeout_seconds: float = Field(default=1.0, gt=0)
    upload_read_timeout_seconds: float = Field(default=30.0, gt=0)
    fetch_read_timeout_seconds: float = Field(default=10.0, gt=0)
    ai_read_timeout_seconds: float = Field(default=60.0, gt=0)
    stream_heartbeat_seconds: float = Field(
        default=10.0, gt=0, le=60, description="event streams: a comment line this often"
    )
    presets_read_timeout_seconds: float = Field(default=5.0, gt=0)
    library_read_timeout_seconds: float = Field(
        default=15.0, gt=0, description="library-svc: history, drafts, account, recording snaps"
    )
    upstream_pool_size: int = Field(default=32, ge=1, le=1024)

    # Bodies.
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_json_bytes: int = Field(default=64 * 1024, gt=0)
    max_library_json_bytes: int = Field(
        default=256 * 1024, gt=0, description="drafts and billing events (library-svc's limit)"
    )

    # Rate limits and quotas, shared by every replica through Redis when it is set.
    redis_url: str | None = None
    redis_timeout_seconds: float = Field(default=0.25, gt=0, le=10)
    rate_limit_enabled: bool = True
    # The tiers (tiers.yaml or TIERS_FILE) hold every tier's limits; these three, when
    # set, replace the anonymous tier's.
    tiers_file: Path | None = None
    rate_limit_default: str | None = None
    rate_limit_ai: str | None = None
    ai_daily_quota: str | None = None
    rate_limit_strategy: RateLimitStrategy = "fixed-window"
    rate_limit_fail_open: bool = True
    rate_limit_memory_fallback: bool = False
    rate_limit_store_retry_seconds: float = Field(default=1.0, gt=0, le=300)

    # Without Redis, what every worker of this machine counts and remembers together
    # (limits, idempotency keys): an SQLite file. gunicorn's master makes a fresh one
    # when this is unset; an app made without gunicorn gets a private one.
    local_state_path: Path | None = None

    # Signed-in callers: Firebase ID tokens.
    firebase_project_id: str | None = None
    firebase_certs_url: str = GOOGLE_CERTS_URL
    firebase_auth_emulator_host: str | None = None
    token_clock_skew_seconds: int = Field(default=30, ge=0, le=300)

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
    def _parsable_limit(cls, value: str | None) -> str | None:
        return None if value is None else parsable_limit(value)

    @field_validator("tiers_file")
    @classmethod
    def _valid_tiers(cls, value: Path | None) -> Path | None:
        try:
            load_tiers(value)
        except TiersError as error:
            raise ValueError(str(error)) from None
        return value

    @field_validator("firebase_auth_emulator_host")
    @classmethod
    def _emulator_not_in_production(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value and str(info.data.get("environment", "")).lower() == "production":
            raise ValueError(
                "the Auth emulator's tokens are unsigned: emulator mode is refused when "
                "ENVIRONMENT=production (unset FIREBASE_AUTH_EMULATOR_HOST)"
            )
        return value or None

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
