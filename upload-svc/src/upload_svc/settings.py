"""upload-svc settings (environment variables of the same names)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from chassis.settings import ServiceSettings


class UploadSettings(ServiceSettings):
    service_name: str = "upload-svc"
    storage_dir: Path = Field(default=Path("var/uploads"), description="local storage root")
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(default=50_000_000, gt=0)
    thumbnail_size: int = Field(default=320, ge=32, le=2048)
    preview_long_side: int = Field(default=768, ge=128, le=4096)
