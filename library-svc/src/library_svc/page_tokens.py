"""Opaque, tamper-evident page tokens and sync cursors.

A token is base64url(JSON) plus an HMAC-SHA256 over it with ``PAGE_TOKEN_SECRET``; it
names the list and the person it belongs to, so a token altered, forged, or taken from
another list or another person is a 400 ``invalid_page_token``, never a wrong page.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from chassis.errors import ApiError


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PageTokens:
    def __init__(self, secret: str) -> None:
        self.key = secret.encode()

    def _signature(self, body: bytes) -> bytes:
        return hmac.new(self.key, body, hashlib.sha256).digest()[:16]

    def encode(self, kind: str, owner: str, position: Any) -> str:
        body = json.dumps({"k": kind, "o": owner, "p": position}, separators=(",", ":")).encode()
        return f"{_b64(body)}.{_b64(self._signature(body))}"

    def decode(self, token: str, kind: str, owner: str, code: str = "invalid_page_token") -> Any:
        invalid = ApiError(400, code, "The page token is not valid for this list.")
        try:
            body_text, signature_text = token.split(".", 1)
            body, signature = _unb64(body_text), _unb64(signature_text)
        except ValueError:
            raise invalid from None
        if not hmac.compare_digest(signature, self._signature(body)):
            raise invalid
        try:
            payload = json.loads(body)
        except ValueError:
            raise invalid from None
        if payload.get("k") != kind or payload.get("o") != owner:
            raise invalid
        return payload.get("p")


def page_size(raw: str | None, maximum: int, default: int = 20) -> int:
    if raw is None or raw == "":
        return min(default, maximum)
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= maximum:
        raise ApiError(
            400, "invalid_page_size", f"page_size must be a whole number from 1 to {maximum}."
        )
    return value
