"""Who is calling: the identity every limit, quota and idempotency key is counted against.

A signed-in person (a verified Firebase ID token, see :mod:`gateway.auth`) is known by
uid, ``user:<uid>``, so signing in from a new network keeps the same budget. A client
that presents an API key (from the mounted secret ``API_KEYS_FILE``) is known by
its key's name, wherever it connects from. Anyone else is known by address, and the
address comes from ``X-Forwarded-For`` only through the configured number of trusted
proxy hops (werkzeug's ProxyFix takes the entry that many hops from the right). Entries
a client wrote itself sit further left and are never read, so a spoofed header cannot
buy a fresh bucket. IPv6 clients are counted per /64, the block one subscriber gets, so
rotating through one's own addresses does not either.

Keys are compared in constant time: each presented key is hashed and compared with every
stored hash by ``hmac.compare_digest``, with no early exit.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import structlog
from flask import Flask, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

from chassis.errors import ApiError
from chassis.settings import SettingsError
from gateway.auth import current_caller

log = structlog.get_logger(__name__)

MIN_KEY_LENGTH = 16
RELOAD_CHECK_SECONDS = 10.0

KeyStatus = Literal["none", "valid", "invalid"]


@dataclass(frozen=True)
class Client:
    bucket: str
    """What limits count against: ``user:<uid>``, ``key:<name>`` or ``ip:<address or /64>``."""
    address: str
    name: str | None
    key_status: KeyStatus


def parse_keys_file(text: str, source: str) -> list[tuple[bytes, str]]:
    """``key`` or ``key:client-name`` per line; ``#`` comments and blank lines skipped."""
    entries: list[tuple[bytes, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, name = line.partition(":")
        key, name = key.strip(), name.strip()
        if len(key) < MIN_KEY_LENGTH:
            raise ValueError(
                f"{source} line {number}: a key must have at least {MIN_KEY_LENGTH} characters"
            )
        digest = hashlib.sha256(key.encode()).digest()
        entries.append((digest, name or f"key-{digest.hex()[:12]}"))
    return entries


class ApiKeys:
    """The keys in the mounted secret, re-read when the file changes (secrets rotate in place)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: list[tuple[bytes, str]] = []
        self._mtime: float | None = None
        self._checked = 0.0
        if path is not None:
            try:
                self._load()
            except (OSError, ValueError) as error:
                message = f"invalid setting API_KEYS_FILE: {error}"
                raise SettingsError(message) from None

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def __len__(self) -> int:
        return len(self._entries)

    def _load(self) -> None:
        assert self.path is not None
        mtime = os.stat(self.path).st_mtime
        entries = parse_keys_file(self.path.read_text(encoding="utf-8"), str(self.path))
        self._entries, self._mtime = entries, mtime

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if self.path is None or now - self._checked < RELOAD_CHECK_SECONDS:
            return
        with self._lock:
            if now - self._checked < RELOAD_CHECK_SECONDS:
                return
            self._checked = now
            try:
                if os.stat(self.path).st_mtime != self._mtime:
                    self._load()
                    log.info("api_keys_reloaded", keys=len(self._entries))
            except (OSError, ValueError) as error:
                log.error("api_keys_reload_failed", error=str(error))

    def lookup(self, presented: str) -> str | None:
        """The client name for a presented key, or None; timing does not depend on the key."""
        self._maybe_reload()
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found: str | None = None
        for stored, name in self._entries:
            if hmac.compare_digest(digest, stored):
                found = name
        return found


def user_bucket(uid: str) -> str:
    """What a signed-in person's limits, quota and idempotency keys count against."""
    return f"user:{uid}"


@functools.lru_cache(maxsize=4096)
def address_bucket(address: str) -> str:
    """The bucket of an address (an IPv6 client by its /64); cached, since a client's
    address repeats from request to request and parsing it was 3 % of a proxied GET."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return f"ip:{address}"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return f"ip:{parsed.ipv4_mapped}"
        network = ipaddress.IPv6Network(f"{parsed}/64", strict=False)
        return f"ip:{network}"
    return f"ip:{parsed}"


class Identity:
    def __init__(self, keys: ApiKeys, header: str, required: bool) -> None:
        self.keys = keys
        self.header = header
        self.required = required

    def resolve(self) -> Client:
        address = request.remote_addr or "unknown"
        presented = request.headers.get(self.header) if self.keys.enabled else None
        person = current_caller().user
        if presented:
            name = self.keys.lookup(presented)
            if name is not None:
                bucket = user_bucket(person) if person else f"key:{name}"
                return Client(bucket, address, name, "valid")
            # A wrong key is counted by address, so guessing keys is rate limited too.
            return Client(address_bucket(address), address, None, "invalid")
        if person:
            return Client(user_bucket(person), address, None, "none")
        return Client(address_bucket(address), address, None, "none")

    def current(self) -> Client:
        client = g.get("gateway_client")
        if client is None:
            client = self.resolve()
            g.gateway_client = client
        return client

    def bucket(self) -> str:
        return self.current().bucket

    def authenticate(self) -> None:
        """Refuse a wrong key always, and a missing one when keys are required."""
        client = self.current()
        if client.key_status == "invalid":
            raise ApiError(401, "invalid_api_key", f"The {self.header} header is not valid.")
        if self.required and client.key_status != "valid":
            raise ApiError(401, "api_key_required", f"Send your API key in {self.header}.")


def trust_proxies(app: Flask, hops: int) -> None:
    """Read the client address (and scheme, for HSTS) through ``hops`` trusted proxies."""
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=1)  # type: ignore[method-assign]
