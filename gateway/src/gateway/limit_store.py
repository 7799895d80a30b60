"""The rate-limit store: Redis shared by every replica, with a defined answer when it is gone.

flask-limiter talks to a ``limits`` storage. This one wraps the Redis storage and decides
what an unreachable Redis means, so that it is never a 500:

- fail open (default): the request is served, counted in
  ``gateway_rate_limit_store_errors_total`` and the outage logged as a warning;
- fail open with ``RATE_LIMIT_MEMORY_FALLBACK``: as above, but each worker keeps counting
  in its own memory meanwhile (approximate limits beat none);
- fail closed (``RATE_LIMIT_FAIL_OPEN=false``): 503 ``rate_limit_unavailable``.

Redis calls are bounded by short socket timeouts and one immediate reconnect (a pooled
socket the server closed on restart), never redis-py's default backoff. A request's check
costs one round trip for all of its windows (:meth:`ResilientRedisStorage.check_windows`,
one script), and a later charge (the quota, once ideas were delivered) one more: each
counter's value and time to live come back with it and are kept for the rest of the
request, so the rate-limit headers need no further calls. After a failure,
Redis is left alone for ``RATE_LIMIT_STORE_RETRY_SECONDS`` so that an outage costs no
time per request; the first call after that probes it again, so limits come back as soon
as Redis does.

The class registers the ``gateway+redis://`` storage scheme with ``limits``, which is how
flask-limiter builds it from a URI.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import redis
import structlog
from flask import g, has_request_context
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.storage.base import MovingWindowSupport, SlidingWindowCounterSupport

from chassis import redis_client
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
# Every window of one request in one step, as limits' fixed window does them one by one:
# a hit counts and then compares, a peek (a limit charged later) only reads; the first
# breach ends the check, so the windows after it are neither counted nor read. ARGV holds
# four values per key: amount, expiry, cost, peek (1) or hit (0). Returns count, TTL pairs.
CHECK_WINDOWS = """
local answers = {}
for index, key in ipairs(KEYS) do
  local base = (index - 1) * 4
  local amount = tonumber(ARGV[base + 1])
  local cost = tonumber(ARGV[base + 3])
  local count
  local breached
  if ARGV[base + 4] == '1' then
    count = tonumber(redis.call('GET', key) or '0')
    breached = count >= amount - cost + 1
  else
    count = redis.call('INCRBY', key, cost)
    if count == cost then
      redis.call('EXPIRE', key, ARGV[base + 2])
    end
    breached = count > amount
  end
  answers[#answers + 1] = count
  answers[#answers + 1] = redis.call('TTL', key)
  if breached then
    break
  end
end
return answers
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


class Window(NamedTuple):
    """One fixed window of one request: its counter, limit, length in seconds and cost."""

    key: str
    amount: int
    expiry: int
    cost: int
    peek: bool
    """Only read now (the limit is charged after the response), not counted."""

    def allows(self, count: int) -> bool:
        """The answer of limits' fixed window: ``hit`` and ``test`` compare differently."""
        if self.peek:
            return count < self.amount - self.cost + 1
        return count <= self.amount


def check_one_by_one(storage: Storage, windows: Sequence[Window]) -> int | None:
    """The first breached window's index, else None, with one store call per window.

    For the stores that are not Redis (each worker's memory during an outage, the
    machine's SQLite file): the same answers as the script, without a round trip to save.
    """
    for index, window in enumerate(windows):
        if window.peek:
            count = storage.get(window.key)
        else:
            count = storage.incr(window.key, window.expiry, amount=window.cost)
        if not window.allows(count):
            return index
    return None


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
        "check_windows": lambda *_, **__: None,
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
            **redis_client.connection_options(timeout_seconds),
            **options,
        )
        connection = self.primary.get_connection()
        self._incr_with_ttl = connection.register_script(INCR_WITH_TTL)
        self._check_windows = connection.register_script(CHECK_WINDOWS)
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
            if name == "check_windows":
                return check_one_by_one(self.fallback, *args)
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

    def _primary_check_windows(self, windows: Sequence[Window]) -> int | None:
        answers = self._check_windows(
            [self.primary.prefixed_key(window.key) for window in windows],
            [
                value
                for window in windows
                for value in (window.amount, window.expiry, window.cost, int(window.peek))
            ],
        )
        now, seen = time.time(), seen_windows()
        for index in range(len(answers) // 2):
            window, count = windows[index], int(answers[2 * index])
            seen[window.key] = (count, now + max(int(answers[2 * index + 1]), 0))
            if not window.allows(count):
                return index
        return None

    def check_windows(self, windows: Sequence[Window]) -> int | None:
        """Every window of a request in one round trip: the first breached one's index."""
        if not windows:
            return None
        return self._run(self._primary_check_windows, "check_windows", windows)

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
