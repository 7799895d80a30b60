"""library-svc settings (environment variables of the same names).

``DATABASE_URL`` is any SQLAlchemy URL: ``postgresql+psycopg://...`` in a cluster,
``sqlite:///var/library.db`` for ``make run``. The pool holds one connection per
request thread (``GUNICORN_THREADS``) unless ``DB_POOL_SIZE`` says otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr

from chassis.settings import ServiceSettings


class LibrarySettings(ServiceSettings):
    service_name: str = "library-svc"

    database_url: str = Field(default="sqlite:///var/library.db", description="SQLAlchemy URL")
    db_pool_size: int | None = Field(default=None, ge=1, le=256, description="unset: threads")
    db_max_overflow: int = Field(default=2, ge=0, le=256)
    db_pool_timeout_seconds: float = Field(default=5.0, gt=0)
    db_statement_timeout_ms: int = Field(default=10_000, ge=0, description="PostgreSQL only")

    upload_svc_url: str = "http://127.0.0.1:8081"
    upload_svc_timeout_seconds: float = Field(default=10.0, gt=0)

    page_token_secret: SecretStr = Field(
        default=SecretStr("development-page-token-secret"),
        description="HMAC key signing page tokens and sync cursors",
    )
    tiers_file: Path | None = Field(
        default=None, description="the tier table (YAML); unset: the one packaged with chassis"
    )

    max_draft_bytes: int = Field(default=256 * 1024, gt=0, description="largest draft body")
    max_snap_record_bytes: int = Field(default=512 * 1024, gt=0)
    autosave_window_seconds: float = Field(
        default=60.0, ge=0, description="autosaves this close to the last one fold into it"
    )
    tombstone_retention_seconds: float = Field(
        default=30 * 24 * 3600.0, gt=0, description="how long deletions stay in the feed"
    )
    max_page_size: int = Field(default=100, ge=1, le=1000)

    billing_webhook_authorization: SecretStr | None = Field(
        default=None, description="the exact Authorization header the purchase provider sends"
    )
    pro_entitlement_id: str = "pro"

    firebase_project_id: str | None = None
    firebase_claims_enabled: bool = Field(
        default=True, description="keep the tier custom claim in step through Firebase Admin"
    )

    sweep_interval_seconds: float = Field(
        default=300.0, ge=0, description="in-process sweep period; 0 turns it off"
    )
    sweep_grace_seconds: float = Field(
        default=60.0, ge=0, description="a deletion this old with no progress is resumed"
    )

    def pool_size(self) -> int:
        if self.db_pool_size is not None:
            return self.db_pool_size
        try:
            return max(1, int(os.environ.get("GUNICORN_THREADS", "8")))
        except ValueError:
            return 8
