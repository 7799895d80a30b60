"""The result cache: a repeated snap costs no model call.

The key covers everything a provider reads: the original upload's sha256 (the pixels),
the capture time upload-svc reports (the local provider writes season and time of day
into its ideas), the preset and the model. It is also scoped to the person asking
(a digest of their uid; one scope for everyone anonymous), so no answer crosses people
and ``cached: true`` never tells anyone that someone else sent the same photo. The
same person sending the same photo with the same preset gets the same ideas back,
whatever upload id it was stored under.
In-process LRU by default (each gunicorn worker has its own); Redis when ``REDIS_URL``
is set, so every worker and pod shares one cache. Redis trouble never fails a request:
a lookup that errors or times out is a miss, a store that fails is skipped, and both
are logged.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from ai_svc import telemetry
from ai_svc.providers.base import Generation, PreviewImage
from chassis import redis_client

log = structlog.get_logger(__name__)
KEY_PREFIX = "ideasnap:ideas:v2"
ANONYMOUS_SCOPE = "anonymous"


def scope_of(user: str | None) -> str:
    """Whose answers these are, without the uid itself in a Redis key."""
    if user is None:
        return ANONYMOUS_SCOPE
    return hashlib.sha256(user.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class CacheKey:
    sha256: str
    preset: str
    model: str
    captured_at: str = "-"
    scope: str = ANONYMOUS_SCOPE

    @classmethod
    def of(cls, image: PreviewImage, preset: str, model: str, user: str | None) -> CacheKey:
        return cls(
            sha256=image.sha256,
            preset=preset,
            model=model,
            captured_at=image.captured_at.isoformat() if image.captured_at else "-",
            scope=scope_of(user),
        )

    def __str__(self) -> str:
        return (
            f"{KEY_PREFIX}:{self.scope}:{self.model}:{self.preset}:{self.sha256}:{self.captured_at}"
        )


class ResultCache(Protocol):
    kind: str

    def get(self, key: CacheKey) -> Generation | None: ...

    def put(self, key: CacheKey, generation: Generation) -> None: ...


def lookup(cache: ResultCache, key: CacheKey) -> Generation | None:
    """A lookup, counted in ``ai_cache_requests_total``."""
    found = cache.get(key)
    telemetry.CACHE_REQUESTS.labels("hit" if found is not None else "miss").inc()
    return found


class NoCache:
    kind = "none"

    def get(self, key: CacheKey) -> Generation | None:
        return None

    def put(self, key: CacheKey, generation: Generation) -> None:
        return None


class MemoryCache:
    """A thread-safe LRU with a time to live, in this worker's memory."""

    kind = "memory"

    def __init__(
        self, max_entries: int, ttl_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: CacheKey) -> Generation | None:
        name = str(key)
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                return None
            expires_at, payload = entry
            if expires_at <= self.clock():
                del self._entries[name]
                return None
            self._entries.move_to_end(name)
        return Generation.model_validate_json(payload)

    def put(self, key: CacheKey, generation: Generation) -> None:
        payload = generation.model_dump_json()
        with self._lock:
            self._entries[str(key)] = (self.clock() + self.ttl_seconds, payload)
            self._entries.move_to_end(str(key))
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class RedisCache:
    """Shared by every worker and pod; fails open."""

    kind = "redis"

    def __init__(self, url: str, ttl_seconds: int, timeout_seconds: float) -> None:
        import redis  # only when configured: the client library is slow to import

        self.ttl_seconds = ttl_seconds
        self.errors = redis.RedisError
        self.client = redis_client.connect(url, timeout_seconds)

    def get(self, key: CacheKey) -> Generation | None:
        try:
            payload = self.client.get(str(key))
        except self.errors as error:
            log.warning("cache_unavailable", operation="get", error=str(error))
            return None
        if payload is None:
            return None
        try:
            return Generation.model_validate_json(payload)
        except ValueError:
            log.warning("cache_entry_invalid", key=str(key))
            return None

    def put(self, key: CacheKey, generation: Generation) -> None:
        try:
            self.client.set(str(key), generation.model_dump_json(), ex=self.ttl_seconds)
        except self.errors as error:
            log.warning("cache_unavailable", operation="set", error=str(error))

    def ping(self) -> None:
        """Readiness: raises when Redis cannot be reached."""
        self.client.ping()

    def close(self) -> None:
        self.client.close()
