"""Ideas for a stored upload: fetch the model preview, consult the cache, ask the provider.

The provider only ever sees upload-svc's preview (768 px long side by default), never
the original upload: a 12-megapixel photo would cost ~20 times the bytes and tokens
for no better ideas.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import structlog

from ai_svc import telemetry
from ai_svc.cache import CacheKey, ResultCache, lookup
from ai_svc.presets import Catalogue, Preset
from ai_svc.providers.base import Generation, PreviewImage, Provider, Usage
from ai_svc.resilience import Clock, Deadline
from chassis.caller import Caller, current_caller
from chassis.disclaimer import disclaimer_for
from chassis.errors import ApiError
from chassis.outgoing import ServiceClient

log = structlog.get_logger(__name__)

SHA256_HEADER = "X-Upload-Sha256"
CAPTURED_AT_HEADER = "X-Upload-Captured-At"


def captured_at(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


class IdeaService:
    def __init__(
        self,
        uploads: ServiceClient,
        provider: Provider,
        catalogue: Catalogue,
        cache: ResultCache,
        *,
        preview_long_side: int,
        deadline_seconds: float,
        clock: Clock = time.monotonic,
    ) -> None:
        self.uploads = uploads
        self.provider = provider
        self.catalogue = catalogue
        self.cache = cache
        self.preview_long_side = preview_long_side
        self.deadline_seconds = deadline_seconds
        self.clock = clock

    def preview(self, upload_id: str, deadline: Deadline, caller: Caller) -> PreviewImage:
        """The image the model sees: upload-svc's preview, never the original.

        Asked for as the caller, so upload-svc answers 404 for anyone else's upload.
        """
        connect, read = self.uploads.timeout
        left = deadline.remaining()
        if left <= 0:
            raise ApiError(504, "upstream_timeout", "The request deadline passed.")
        response = self.uploads.request(
            "GET",
            f"/internal/uploads/{upload_id}/preview",
            params={"long_side": self.preview_long_side},
            headers=caller.headers(),
            timeout=(min(connect, left), min(read, left)),
        )
        if response.status_code == 404:
            raise ApiError(404, "upload_not_found", "No upload with this id.")
        if response.status_code != 200:
            raise ApiError(502, "upstream_error", "The upload service failed.")
        mime_type = response.headers.get("Content-Type", "image/jpeg").split(";")[0].strip()
        sha256 = response.headers.get(SHA256_HEADER, "").strip().lower()
        when = captured_at(response.headers.get(CAPTURED_AT_HEADER))
        if not sha256:
            return PreviewImage.of(response.content, captured_at=when)
        return PreviewImage(
            data=response.content,
            sha256=sha256,
            mime_type=mime_type if mime_type.startswith("image/") else "image/jpeg",
            captured_at=when,
        )

    def generate(
        self, image: PreviewImage, preset: Preset, deadline: Deadline, caller: Caller
    ) -> Generation:
        key = CacheKey.of(image, preset.key, self.provider.model, caller.user)
        cached = lookup(self.cache, key)
        if cached is not None:
            return cached.model_copy(update={"cached": True, "usage": Usage()})
        try:
            generation = self.provider.generate(image, preset, self.catalogue, deadline)
        except ApiError as error:
            outcome = "blocked" if error.code == "content_blocked" else "error"
            telemetry.IDEAS.labels(self.provider.name, outcome).inc()
            raise
        except Exception:
            telemetry.IDEAS.labels(self.provider.name, "error").inc()
            raise
        self.cache.put(key, generation)
        return generation

    def ideas(self, upload_id: str, preset: Preset) -> dict[str, Any]:
        started = time.monotonic()
        deadline = Deadline(self.deadline_seconds, self.clock)
        caller = current_caller()
        image = self.preview(upload_id, deadline, caller)
        generation = self.generate(image, preset, deadline, caller)
        telemetry.IDEAS.labels(generation.provider, "ok").inc()
        telemetry.ANSWER_DURATION.labels(generation.provider, "json").observe(
            time.monotonic() - started
        )
        log.info(
            "ideas_answered",
            upload_id=upload_id,
            provider=generation.provider,
            model=generation.model,
            cached=generation.cached,
            input_tokens=generation.usage.input_tokens,
            output_tokens=generation.usage.output_tokens,
        )
        return {
            "upload_id": upload_id,
            "preset": preset.model_dump(),
            **generation.model_dump(),
            "disclaimer": disclaimer_for(preset.language).statement,
        }
