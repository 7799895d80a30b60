"""gateway settings (environment variables of the same names)."""

from __future__ import annotations

from pydantic import Field

from chassis.settings import ServiceSettings

MULTIPART_OVERHEAD_BYTES = 64 * 1024


class GatewaySettings(ServiceSettings):
    service_name: str = "gateway"
    upload_svc_url: str = "http://127.0.0.1:8081"
    ai_svc_url: str = "http://127.0.0.1:8082"
    upstream_connect_timeout_seconds: float = Field(default=1.0, gt=0)
    upload_read_timeout_seconds: float = Field(default=30.0, gt=0)
    ai_read_timeout_seconds: float = Field(default=60.0, gt=0)
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, gt=0)

    @property
    def max_body_bytes(self) -> int:
        return self.max_upload_bytes + MULTIPART_OVERHEAD_BYTES
