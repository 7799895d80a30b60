"""Rate limits and the daily AI quota, with flask-limiter.

Three limits, each counted per client (a signed-in person by uid, anyone else by API key
or address; see :mod:`gateway.identity`), with the values of the caller's tier (see
:mod:`gateway.tiers`), shared by every gateway replica through Redis, or by every worker
of the machine through :mod:`gateway.local_store` without it:

- ``default`` (the tier's ``rate_limit``; anonymous 60/minute): every public API call,
  all routes together, so a client's budget does not grow with the number of routes;
- ``ai`` (``ai_rate_limit``; anonymous 10/minute): the calls that cost a model call
  (``POST /v1/snaps``, ``POST /v1/ideas``), all hit up front;
- ``quota`` (``ai_daily_quota``; anonymous 100/day): the same calls, charged only when ideas were
  delivered (a rejected image or an upstream failure costs the client nothing, and an
  idempotent replay is neither checked nor charged: the retry after the last unit of
  the quota still gets its answer).

Preflights, health checks and the contract are never limited. A refusal is 429 in the
JSON error shape with ``Retry-After``; every limited response carries ``X-RateLimit-*``
(epoch reset, as flask-limiter names them) and ``RateLimit-*`` (delta reset, IETF draft)
for the limit closest to running out; the 429's body names the limit, the tier and when
it resets.

All the windows of one request are checked in one store call (:class:`OneTripLimiter`):
one Redis round trip, whatever the number of limits.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from flask import Flask, Response, g, request
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded, RequestLimit
from limits import parse_many
from limits.strategies import FixedWindowRateLimiter

from chassis.errors import error_response
from gateway.auth import current_caller
from gateway.identity import Identity
from gateway.limit_store import RateLimitStoreUnavailable, Window, check_one_by_one
from gateway.local_store import SCHEME as LOCAL_SCHEME
from gateway.local_store import LocalLimitStorage
from gateway.metrics import RATE_LIMITED
from gateway.settings import GatewaySettings
from gateway.tiers import Tier, Tiers

if TYPE_CHECKING:
    from flask_limiter._limits import RuntimeLimit

log = structlog.get_logger(__name__)

KEY_PREFIX = "gateway"


SCOPES = ("default", "ai", "quota")


class OneTripLimiter(Limiter):
    """flask-limiter, with a request's windows checked in one store call.

    Why: flask-limiter asks the store once per limit and per request rebuilds every limit
    from its string (the limit manager's resolution, ``parse_many``, new ``RuntimeLimit``
    objects, one key function call per limit). A snap has three windows (``default`` and
    ``ai`` counted, ``quota`` only read until the ideas are delivered), so that was three
    round trips before the view and one more for the charge; and on a proxied GET the
    limiter's own bookkeeping cost more CPU than its one round trip (see
    bench/profiles/gateway.md, "Limits in one round trip").

    The check here gives the same answers: the same limits in the same order (sorted by
    window length, stable), a hit counts then compares and a conditional limit is only
    read, the first breach ends the check, and the same ``RequestLimit`` list, header
    limit and ``RateLimitExceeded``. Only the store call is one
    (:meth:`~gateway.limit_store.ResilientRedisStorage.check_windows`, one Lua script:
    atomic, so two replicas never interleave inside one request's windows), and each
    limit string is parsed once per process. flask-limiter keeps doing the rest, which
    it does well and which is not on the measured path: configuration, keys, the
    conditional charge after the response (one more round trip, only for an AI call
    that delivered, carrying its new count back for the headers), clearing, and the moving and
    sliding window strategies, which keep its own per-limit check unchanged.
    """

    _one_trip = False

    def init_app(self, app: Flask) -> None:
        super().init_app(app)
        self._parsed: dict[tuple[int, str], tuple[RuntimeLimit, ...]] = {}
        # Only what this check reproduces; anything else keeps flask-limiter's own path.
        # It reads flask-limiter 4's internals: should they move in an upgrade, the
        # check falls back to flask-limiter's own (and the snap's MONITOR test fails).
        try:
            self._one_trip = (
                self.enabled
                and isinstance(self._limiter, FixedWindowRateLimiter)
                and bool(self._fail_on_first_breach)
                and not self._in_memory_fallback_enabled
                and not self._meta_limits
                and self._on_breach is None
                and not self.limit_manager._default_limits
                and not self._marked_for_limiting
                and callable(self._Limiter__check_all_limits_exempt)  # type: ignore[attr-defined]
                and all(
                    hasattr(group, "limit_provider")
                    for group in self.limit_manager._application_limits
                )
            )
        except AttributeError:
            self._one_trip = False

    def _runtime_limits(self) -> list[RuntimeLimit]:
        limits: list[RuntimeLimit] = []
        for group in self.limit_manager._application_limits:
            provider = group.limit_provider
            value = provider() if callable(provider) else provider
            parsed = self._parsed.get((id(group), value))
            if parsed is None:
                parsed = self._parsed[(id(group), value)] = tuple(group)
            limits.extend(parsed)
        return limits

    def _check_request_limit(
        self, callable_name: str | None = None, in_middleware: bool = True
    ) -> None:
        if not self._one_trip:
            super()._check_request_limit(callable_name, in_middleware)
            return
        endpoint = self.identify_request()
        if self._Limiter__check_all_limits_exempt(endpoint):  # type: ignore[attr-defined]
            return
        keys: dict[Callable[[], str], str] = {}
        chosen: list[tuple[RuntimeLimit, list[str]]] = []
        windows: list[Window] = []
        for lim in sorted(self._runtime_limits(), key=lambda item: item.limit):
            if lim.is_exempt or lim.method_exempt:
                continue
            key = keys.get(lim.key_func)
            if key is None:
                key = keys[lim.key_func] = lim.key_func()
            scope = lim.scope_for(endpoint, request.method)
            if not (key and scope):
                self.logger.error(f"Skipping limit: {lim.limit}. Empty value found in parameters.")
                continue
            args = [self._key_prefix, key, scope] if self._key_prefix else [key, scope]
            item = lim.limit
            peek = lim.deduct_when is not None
            windows.append(
                Window(
                    item.key_for(*args), item.amount, item.get_expiry(), lim.deduction_amount, peek
                )
            )
            chosen.append((lim, args))
        check = getattr(self.storage, "check_windows", None)
        breached = check(windows) if check else check_one_by_one(self.storage, windows)
        evaluated = chosen if breached is None else chosen[: breached + 1]
        view_limits = []
        for lim, args in evaluated:
            if lim.deduct_when is not None:
                self.context.conditional_deductions[lim] = args
            view_limits.append(RequestLimit(self, lim.limit, args, False, lim.shared))
        context = self.context
        context.view_rate_limits = view_limits
        if breached is not None:
            view_limits[-1].breached = True
            context.view_rate_limit = view_limits[-1]
            failed = evaluated[-1][0]
            self.logger.info(
                "ratelimit %s (%s) exceeded at endpoint: %s",
                failed.limit,
                evaluated[-1][1][-2],
                evaluated[-1][1][-1],
            )
            raise RateLimitExceeded(failed)
        explicit = [limit for limit in view_limits if not limit.shared]
        context.view_rate_limit = (explicit or view_limits or [None])[0]


def storage_for(settings: GatewaySettings, local_path: Path) -> tuple[str, dict[str, object]]:
    if not settings.redis_url:
        return f"{LOCAL_SCHEME}://{local_path}", {}
    return f"gateway+{settings.redis_url}", {
        "fail_open": settings.rate_limit_fail_open,
        "memory_fallback": settings.rate_limit_memory_fallback,
        "retry_seconds": settings.rate_limit_store_retry_seconds,
        "timeout_seconds": settings.redis_timeout_seconds,
    }


def build_limiter(
    settings: GatewaySettings,
    identity: Identity,
    *,
    tier: Callable[[], Tier],
    limited_endpoints: Collection[str],
    ai_endpoints: Collection[str],
    answer_waiting: Callable[[], bool],
    local_path: Path,
) -> Limiter:
    """The limiter; ``answer_waiting`` tells whether an idempotent replay is due (no quota).

    ``tier`` gives the current caller's tier: the limit values are looked up per request.
    """

    def costs_ai() -> bool:
        return request.endpoint in ai_endpoints

    def delivered(response: Response) -> bool:
        return response.status_code < 400 and not g.get("idempotent_replay")

    uri, options = storage_for(settings, local_path)
    limiter = OneTripLimiter(
        key_func=identity.bucket,
        application_limits=[
            ApplicationLimit(lambda: tier().rate_limit, scope="default"),
            ApplicationLimit(
                lambda: tier().ai_rate_limit, scope="ai", exempt_when=lambda: not costs_ai()
            ),
            ApplicationLimit(
                lambda: tier().ai_daily_quota,
                scope="quota",
                exempt_when=lambda: not costs_ai() or answer_waiting(),
                deduct_when=delivered,
            ),
        ],
        storage_uri=uri,
        storage_options=options,  # type: ignore[arg-type]
        strategy=settings.rate_limit_strategy,
        headers_enabled=False,
        swallow_errors=False,
        key_prefix=KEY_PREFIX,
        enabled=settings.rate_limit_enabled,
    )

    @limiter.request_filter
    def _not_limited() -> bool:
        return request.method == "OPTIONS" or request.endpoint not in limited_endpoints

    return limiter


def seconds_until(reset_at: float) -> int:
    return max(1, math.ceil(reset_at - time.time()))


def header_limit(limits: list[RequestLimit]) -> RequestLimit:
    """The breached limit, else the one closest to running out (shorter window on a tie)."""
    breached = [item for item in limits if item.breached]
    if breached:
        return breached[0]
    return min(limits, key=lambda item: (item.remaining, item.limit.get_expiry()))


def install_limit_responses(app: Flask, limiter: Limiter) -> None:
    """429 in the error shape, 503 when failing closed, and the limit headers everywhere.

    Must run before ``limiter.init_app``: after-request functions run in reverse order,
    so the headers are written after flask-limiter has charged the quota.
    """

    @app.errorhandler(RateLimitExceeded)
    def _rate_limited(error: RateLimitExceeded) -> Response:
        runtime = error.limit
        label = runtime.scope if isinstance(runtime.scope, str) else "default"
        RATE_LIMITED.labels(label).inc()
        if label == "quota":
            code, what = "quota_exceeded", "Daily AI quota used up"
        else:
            code, what = "rate_limited", "Too many requests"
        tier = current_caller().tier
        try:
            reset_at = header_limit(limiter.current_limits).reset_at
        except Exception as failure:  # the store failing now must not turn into a 500
            log.warning("rate_limit_reset_unknown", error=str(failure))
            reset_at = time.time() + runtime.limit.get_expiry()
        retry_after = seconds_until(reset_at)
        return error_response(
            429,
            code,
            f"{what}: the {tier} tier's limit is {runtime.limit}. "
            f"Retry in {retry_after} s (Retry-After).",
            headers={"Retry-After": str(retry_after)},
            details={
                "limit": label,
                "tier": tier,
                "allowed": str(runtime.limit),
                "reset_at": datetime.fromtimestamp(math.ceil(reset_at), UTC).isoformat(),
                "retry_after_seconds": retry_after,
            },
        )

    @app.errorhandler(RateLimitStoreUnavailable)
    def _store_unavailable(_: RateLimitStoreUnavailable) -> Response:
        retry = app.config["SETTINGS"].rate_limit_store_retry_seconds
        return error_response(
            503,
            "rate_limit_unavailable",
            "Rate limiting is unavailable, so the request was not served. Retry shortly.",
            headers={"Retry-After": str(max(1, math.ceil(retry)))},
        )

    @app.after_request
    def _limit_headers(response: Response) -> Response:
        current = limiter.current_limits if limiter.enabled else []
        if not current or g.get("rate_limit_degraded"):
            return response
        try:
            chosen = header_limit(current)
            reset_at, remaining = chosen.reset_at, chosen.remaining
        except Exception as error:  # a store failing mid-request must not turn into a 500
            log.warning("rate_limit_headers_skipped", error=str(error))
            return response
        delta = seconds_until(reset_at)
        headers = response.headers
        headers["X-RateLimit-Limit"] = str(chosen.limit.amount)
        headers["X-RateLimit-Remaining"] = str(remaining)
        headers["X-RateLimit-Reset"] = str(int(reset_at))
        headers["RateLimit-Limit"] = str(chosen.limit.amount)
        headers["RateLimit-Remaining"] = str(remaining)
        headers["RateLimit-Reset"] = str(delta)
        headers["RateLimit-Policy"] = ", ".join(
            f"{item.limit.amount};w={item.limit.get_expiry()}" for item in current
        )
        if response.status_code == 429:
            headers["Retry-After"] = str(delta)
        return response


def clear_counters(limiter: Limiter, tiers: Tiers, bucket: str) -> None:
    """Forget every count of one client (``user:<uid>``), in every tier's windows.

    For account deletion: nothing about the person stays behind, and a new account under
    the same uid would start afresh.
    """
    storage = limiter.storage
    if isinstance(storage, LocalLimitStorage):
        storage.clear_prefix(f"LIMITER/{KEY_PREFIX}/{bucket}/")
        return
    strategy = limiter.limiter
    for tier in tiers.tiers.values():
        for scope, value in zip(
            SCOPES, (tier.rate_limit, tier.ai_rate_limit, tier.ai_daily_quota), strict=True
        ):
            for item in parse_many(value):
                strategy.clear(item, KEY_PREFIX, bucket, scope)
