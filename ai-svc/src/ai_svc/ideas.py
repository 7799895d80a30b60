"""Ideas for a stored upload: fetch the model preview, ask the provider, shape the answer."""

from __future__ import annotations

from typing import Any

from ai_svc.presets import Catalogue, Preset
from ai_svc.providers.base import Provider
from chassis.errors import ApiError
from chassis.outgoing import ServiceClient

DISCLAIMER = (
    "These ideas were written by AI from your photo. They may be inaccurate or "
    "unsuitable; check them before you post or rely on them."
)


class IdeaService:
    def __init__(
        self,
        uploads: ServiceClient,
        provider: Provider,
        catalogue: Catalogue,
        preview_long_side: int,
    ) -> None:
        self.uploads = uploads
        self.provider = provider
        self.catalogue = catalogue
        self.preview_long_side = preview_long_side

    def preview(self, upload_id: str) -> bytes:
        """The image the model sees: upload-svc's preview, never the original."""
        response = self.uploads.request(
            "GET",
            f"/internal/uploads/{upload_id}/preview",
            params={"long_side": self.preview_long_side},
        )
        if response.status_code == 404:
            raise ApiError(404, "upload_not_found", "No upload with this id.")
        if response.status_code != 200:
            raise ApiError(502, "upstream_error", "The upload service failed.")
        return response.content

    def ideas(self, upload_id: str, preset: Preset) -> dict[str, Any]:
        image = self.preview(upload_id)
        generation = self.provider.generate(image, preset, self.catalogue)
        return {
            "upload_id": upload_id,
            "preset": preset.model_dump(),
            **generation.model_dump(),
            "disclaimer": DISCLAIMER,
        }
