"""The one way a service connects to Redis: short timeouts, one immediate retry, no backoff.

Every Redis user here (the gateway's limits and idempotency keys, ai-svc's answer cache)
has a defined answer for Redis being gone, so a call must fail within its timeout rather
than wait out redis-py's default retries with exponential backoff (three of them, since
redis-py 6). The single retry without delay re-sends on a fresh connection when the
server closed a pooled one (a Redis restart, an idle timeout); a second failure is the
caller's to answer.

Replies are parsed by hiredis when it is installed (it is a dependency of the chassis):
about a quarter less client CPU per limit check than redis-py's Python parser
(bench/profiles/gateway.md, "Redis replies").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis


def connection_options(timeout_seconds: float) -> dict[str, Any]:
    """Keyword arguments for any redis-py client or pool (``limits`` takes them as-is)."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return {
        "socket_timeout": timeout_seconds,
        "socket_connect_timeout": timeout_seconds,
        "retry": Retry(NoBackoff(), 1),
        "health_check_interval": 30,
    }


def connect(url: str, timeout_seconds: float) -> redis.Redis:
    """A pooled client for ``url``; nothing is sent until the first command."""
    import redis  # imported on use: services without Redis do not pay its import

    return redis.Redis.from_url(url, **connection_options(timeout_seconds))
