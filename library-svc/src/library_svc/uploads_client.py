"""Every call library-svc makes to upload-svc, in one place.

Photos are upload-svc's; library-svc asks it to list, send and delete a person's. The
per-owner routes (``/internal/owners/<uid>/uploads``) are newer than the rest of
upload-svc's API: where upload-svc answers them with its generic 404 ``not_found`` (the
route is unknown, as opposed to ``upload_not_found``), :meth:`UploadsClient.owner_uploads`
and :meth:`UploadsClient.delete_owner_uploads` say so (``None`` / ``False``) and the
callers use the uploads named in the person's history instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests
import structlog

from chassis.caller import Caller
from chassis.errors import ApiError
from chassis.outgoing import ServiceClient

log = structlog.get_logger(__name__)
UNKNOWN_ROUTE = "not_found"


@dataclass(frozen=True)
class OwnerUploads:
    uploads: list[dict[str, Any]]
    total_bytes: int


def error_code(response: requests.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("code") if isinstance(error, dict) else None


def upstream_failed(response: requests.Response) -> ApiError:
    if response.status_code == 504:
        return ApiError(504, "upstream_timeout", "The upload service did not answer in time.")
    return ApiError(
        503,
        "upstream_unavailable",
        "The upload service is unavailable; try again shortly.",
        headers={"Retry-After": "5"},
    )


class UploadsClient:
    def __init__(self, base_url: str, timeout_seconds: float) -> None:
        self.client = ServiceClient(
            "upload", base_url, connect_timeout=2.0, read_timeout=timeout_seconds
        )

    def delete_upload(self, upload_id: str, caller: Caller) -> None:
        """Delete one photo; one already gone counts as deleted."""
        response = self.client.request(
            "DELETE", f"/v1/uploads/{upload_id}", headers=caller.headers()
        )
        response.close()
        if response.status_code in (204, 200, 404):
            return
        raise upstream_failed(response)

    def owner_uploads(self, uid: str) -> OwnerUploads | None:
        response = self.client.request("GET", f"/internal/owners/{uid}/uploads")
        if response.status_code == 404 and error_code(response) == UNKNOWN_ROUTE:
            return None
        if response.status_code != 200:
            raise upstream_failed(response)
        body = response.json()
        return OwnerUploads(
            uploads=list(body.get("uploads") or []), total_bytes=int(body.get("size") or 0)
        )

    def delete_owner_uploads(self, uid: str) -> bool:
        """Delete every photo the person owns; False when upload-svc has no such route."""
        response = self.client.request("DELETE", f"/internal/owners/{uid}/uploads")
        response.close()
        if response.status_code == 404 and error_code(response) == UNKNOWN_ROUTE:
            return False
        if response.status_code in (200, 204):
            return True
        raise upstream_failed(response)

    @contextmanager
    def photo(self, upload_id: str, caller: Caller) -> Iterator[requests.Response | None]:
        """The stored photo as a streamed answer, or None when it is gone."""
        response = self.client.request(
            "GET", f"/v1/uploads/{upload_id}", headers=caller.headers(), stream=True
        )
        try:
            if response.status_code == 404:
                yield None
            elif response.status_code != 200:
                raise upstream_failed(response)
            else:
                yield response
        finally:
            response.close()
