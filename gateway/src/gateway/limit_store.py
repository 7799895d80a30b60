"""The rate-limit store: Redis shared by every replica, with a defined answer when it is gone.

flask-limiter talks to a ``limits`` storage. This one wraps the Redis storage and decides
what an unreachable Redis means, so that it is never a 500:

- fail open (default): the request is served, counted in
  ``gateway_rate_limit_store_errors_total`` and the outage logged as a warning;
- fail open with ``RATE_LIMIT_MEMORY_FALLBACK``: as above, but each worker keeps counting
  in its own memory meanwhile (approximate limits beat none);
- fail closed (``RATE_LIMIT_FAIL_OPEN=false``): 503 ``rate_limit_unavailable``.

Redis calls are bounded by short socket timeouts and one immediate reconnect (a pooled
socket the server closed on restart), never redis-py's default backoff. A hit costs one
round trip: the counter's new value and time to live come back together and are kept
for the rest of the request, so the rate-limit headers need no further calls. After a failure,
Redis is left alone for ``RATE_LIMIT_STORE_RETRY_SECONDS`` so that an outage costs no
time per request; the first call after that probes it again, so limits come back as soon
as Redis does.

The class registers the ``gateway+redis://`` storage scheme with ``limits``, which is how
flask-limiter builds it from a URI.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import redis
import structlog
from flask import g, has_request_context
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.storage.base import MovingWindowSupport, SlidingWindowCounterSupport
from redis.backoff import NoBackoff
from redis.retry import Retry

from gateway.metrics import RATE_LIMIT_STORE_ERRORS

log = structlog.get_logger(__name__)

SCHEME_PREFIX = "gateway+"
STILL_DOWN_LOG_SECONDS = 60.0
# limits' own fixed-window increment, returning the time to live as well.
INCR_WITH_TTL = """
local current = redis.call('INCRBY', KEYS[1], ARGV[2])
if tonumber(current) == tonumber(ARGV[2]) then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return {current, redis.call('TTL', KEYS[1])}
"""


class RateLimitStoreUnavailable(Exception):
    """The shared store is unreachable and the gateway is configured to fail closed."""


def note_degraded_request() -> None:
    """Count a request decided without the shared store, once per request."""
    if has_request_context():
        if g.get("rate_limit_degraded"):
            return
        g.rate_limit_degraded = True
    RATE_LIMIT_STORE_ERRORS.inc()


def seen_windows() -> dict[str, tuple[int, float]]:
    """Counters this request hit: key -> (count, reset time)."""
    if not has_request_context():
        return {}
    windows = g.get("rate_limit_windows")
    if windows is None:
        windows = g.rate_limit_windows = {}
    return windows


def limits_checked() -> bool:
    """After the before-request check, a failing store must not turn a response into a 500."""
    return has_request_context() and bool(g.get("rate_limits_checked"))


def _open_answers() -> dict[str, Callable[..., Any]]:
    """What each storage call answers while failing open: nothing counted, nothing refused."""
    return {
        "incr": lambda *_, **__: 0,
        "get": lambda *_, **__: 0,
        "get_expiry": lambda *_, **__: time.time(),
        "check": lambda *_, **__: False,
        "reset": lambda *_, **__: None,
        "clear": lambda *_, **__: None,
        "acquire_entry": lambda *_, **__: True,
        "get_moving_window": lambda *_, **__: (time.time(), 0),
        "acquire_sliding_window_entry": lambda *_, **__: True,
        "get_sliding_window": lambda *_, **__: (0, 0.0, 0, 0.0),
        "clear_sliding_window": lambda *_, **__: None,
    }


class ResilientRedisStorage(Storage, MovingWindowSupport, SlidingWindowCounterSupport):
    STORAGE_SCHEME = ["gateway+redis", "gateway+rediss", "gateway+redis+unix"]

    def __init__(
        self,
        uri: str,
        wrap_exceptions: bool = False,
        *,
        fail_open: bool = True,
        memory_fallback: bool = False,
        retry_seconds: float = 1.0,
        timeout_seconds: float = 0.25,
        **options: Any,
    ) -> None:
        super().__init__(uri, wrap_exceptions=False)
        self.primary = RedisStorage(
            uri.removeprefix(SCHEME_PREFIX),
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 1),
            **options,
        )
        self._incr_with_ttl = self.primary.get_connection().register_script(INCR_WITH_TTL)
        self.fail_open = fail_open
        self.fallback: MemoryStorage | None = MemoryStorage() if memory_fallback else None
        self.retry_seconds = retry_seconds
        self._open = _open_answers()
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._logged_at = 0.0

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return (redis.RedisError, OSError)

    @property
    def mode(self) -> str:
        if not self.fail_open:
            return "closed"
        return "memory" if self.fallback is not None else "open"

    @property
    def available(self) -> bool:
        return self._down_since is None

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._run(getattr(self.primary, name), name, *args, **kwargs)

    def _run(self, primary: Callable[..., Any], name: str, *args: Any, **kwargs: Any) -> Any:
        if time.monotonic() >= self._retry_at:
            try:
                result = primary(*args, **kwargs)
            except (redis.RedisError, OSError) as error:
                self._went_down(error)
            else:
                if self._down_since is not None:
                    self._came_back()
                return result
        return self._degraded(name, *args, **kwargs)

    def _degraded(self, name: str, *args: Any, **kwargs: Any) -> Any:
        note_degraded_request()
        if not self.fail_open and not limits_checked():
            raise RateLimitStoreUnavailable
        if self.fallback is not None:
            return getattr(self.fallback, name)(*args, **kwargs)
        return self._open[name](*args, **kwargs)

    def _went_down(self, error: BaseException) -> None:
        now = time.monotonic()
        with self._lock:
            self._retry_at = now + self.retry_seconds
            first = self._down_since is None
            if first:
                self._down_since = now
            if first or now - self._logged_at >= STILL_DOWN_LOG_SECONDS:
                self._logged_at = now
                log.warning(
                    "rate_limit_store_unavailable",
                    error=f"{type(error).__name__}: {error}",
                    mode=self.mode,
                    retry_seconds=self.retry_seconds,
                )

    def _came_back(self) -> None:
        with self._lock:
            if self._down_since is None:
                return
            outage = time.monotonic() - self._down_since
            self._down_since = None
        log.warning("rate_limit_store_recovered", outage_seconds=round(outage, 3))

    # The ``limits`` storage interface, each call through the same decision.

    def _primary_incr(self, key: str, expiry: int, amount: int = 1) -> int:
        count, ttl = self._incr_with_ttl([self.primary.prefixed_key(key)], [expiry, amount])
        seen_windows()[key] = (int(count), time.time() + max(int(ttl), 0))
        return int(count)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self._run(self._primary_incr, "incr", key, expiry, amount=amount)

    def get(self, key: str) -> int:
        seen = seen_windows().get(key)
        return seen[0] if seen is not None else self._call("get", key)

    def get_expiry(self, key: str) -> float:
        seen = seen_windows().get(key)
        return seen[1] if seen is not None else self._call("get_expiry", key)

    def check(self) -> bool:
        return self._call("check")

    def reset(self) -> int | None:
        return self._call("reset")

    def clear(self, key: str) -> None:
        return self._call("clear", key)

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        return self._call("acquire_entry", key, limit, expiry, amount=amount)

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        return self._call("get_moving_window", key, limit, expiry)

    def acquire_sliding_window_entry(
        self, key: str, limit: int, expiry: int, amount: int = 1
    ) -> bool:
        return self._call("acquire_sliding_window_entry", key, limit, expiry, amount=amount)

    def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        return self._call("get_sliding_window", key, expiry)

    def clear_sliding_window(self, key: str, expiry: int) -> None:
        return self._call("clear_sliding_window", key, expiry)
