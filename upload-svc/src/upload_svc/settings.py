"""upload-svc settings (environment variables of the same names).

Storage is a local directory unless ``STORAGE_BACKEND=s3``. The S3 backend speaks the S3
API through boto3 to any compatible service (AWS S3, Google Cloud Storage's XML interop
endpoint, MinIO, R2); its credentials come from the standard AWS variables and files
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, web identity...),
which boto3 reads itself, so no secret ever passes through these settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from chassis.settings import ServiceSettings


class UploadSettings(ServiceSettings):
    service_name: str = "upload-svc"

    max_upload_bytes: int = Field(default=10 * 1024 * 1024, gt=0, description="largest body")
    max_image_pixels: int = Field(
        default=50_000_000, gt=0, description="largest width x height of one frame"
    )
    max_animation_frames: int = Field(default=300, gt=0)
    max_animation_pixels: int = Field(
        default=100_000_000, gt=0, description="width x height x frames of an animation"
    )
    thumbnail_size: int = Field(default=320, ge=32, le=2048, description="thumbnail long side")
    preview_long_side: int = Field(default=768, ge=128, le=4096)
    jpeg_quality: int = Field(
        default=92, ge=50, le=100, description="re-encoded originals (rotated, HEIC)"
    )
    rendition_quality: int = Field(default=85, ge=50, le=100, description="thumbnail, preview")
    intake_concurrency: int = Field(
        default=2, ge=1, le=64, description="images decoded at once per worker process"
    )
    intake_wait_seconds: float = Field(
        default=20.0, gt=0, description="longest wait for a decode slot before 503"
    )
    spool_dir: Path | None = Field(default=None, description="temp files for bodies")

    anonymous_retention_days: int = Field(
        default=7,
        ge=1,
        le=3650,
        description="days an upload made without signing in is kept (owned uploads: no limit)",
    )
    retention_sweep_interval_seconds: float = Field(
        default=3600.0,
        ge=1,
        description="how often local storage looks for expired anonymous uploads",
    )

    storage_backend: Literal["local", "s3"] = "local"
    storage_dir: Path = Field(default=Path("var/uploads"), description="local storage root")

    s3_bucket: str | None = None
    s3_prefix: str = Field(default="", description="key prefix inside the bucket")
    s3_endpoint_url: str | None = Field(default=None, description="unset: AWS S3")
    s3_region: str | None = None
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    s3_connect_timeout_seconds: float = Field(default=2.0, gt=0)
    s3_read_timeout_seconds: float = Field(default=10.0, gt=0)
    s3_max_attempts: int = Field(default=3, ge=1, le=10)
    s3_presign_redirect: bool = Field(
        default=False, description="answer image GETs with a redirect to a presigned URL"
    )
    s3_presign_ttl_seconds: int = Field(default=300, ge=10, le=7 * 24 * 3600)
    s3_presign_endpoint_url: str | None = Field(
        default=None, description="endpoint clients reach, when it differs from the service's"
    )

    @model_validator(mode="after")
    def _s3_needs_a_bucket(self) -> UploadSettings:
        if self.storage_backend == "s3" and not self.s3_bucket:
            raise ValueError("S3_BUCKET is required when STORAGE_BACKEND=s3")
        return self
