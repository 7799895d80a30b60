"""Resilience for upstream model calls, owned in this one place.

Every request gets one :class:`Deadline`. Within it, :class:`ResilientCaller`:

1. picks a model: the primary, or the fallback once the primary has answered
   "overloaded" (429/503) or while the primary's circuit is open;
2. asks that model's :class:`CircuitBreaker` for permission; an open circuit fails
   fast (:class:`CircuitOpen`, answered 503 with ``Retry-After``);
3. takes an upstream slot (:class:`UpstreamSlots`, a semaphore bounding concurrent
   upstream calls per worker) waiting at most a bounded time (:class:`Overloaded`);
4. runs the attempt on the slot's thread, with a per-attempt timeout no longer than
   what is left of the deadline, while the request thread waits on it for at most the
   remaining time: no request thread ever waits past its deadline, even if a
   connection stalls;
5. retries retryable faults (408, 429, 5xx, timeouts, connection errors) with
   exponential backoff and full jitter (tenacity), never sleeping less than the
   server's ``RetryInfo`` delay, and never starting a sleep that would leave less
   than ``min_attempt_seconds`` of the deadline for the next attempt.

Clock, sleep and randomness are injected so the behaviour can be tested without
waiting.
"""

from __future__ import annotations

import contextvars
import enum
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import TypeVar

import tenacity

Clock = Callable[[], float]
Sleep = Callable[[float], None]
T = TypeVar("T")

BREAKER_FAILURES = frozenset({"timeout", "rate_limited", "server_error", "connection_error"})


class UpstreamFault(Exception):
    """A failed upstream call, classified once so retries, breaker and metrics agree.

    ``outcome`` is the metrics label: timeout, rate_limited, server_error,
    connection_error or client_error.
    """

    def __init__(
        self,
        outcome: str,
        message: str,
        *,
        retryable: bool,
        overloaded: bool = False,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.retryable = retryable
        self.overloaded = overloaded
        self.retry_after = retry_after
        self.status = status

    @property
    def breaker_failure(self) -> bool:
        return self.outcome in BREAKER_FAILURES


class AnsweredUnusable(Exception):
    """The upstream answered, so it is healthy, but the answer cannot be used.

    Never retried by the caller (the provider decides what to do with it), and counted
    as a success by the circuit breaker.
    """


class DeadlinePassed(UpstreamFault):
    """The request's overall deadline ran out while an attempt was still pending."""

    def __init__(self) -> None:
        super().__init__("timeout", "The request deadline passed.", retryable=False)


class CircuitOpen(Exception):
    """Every usable model's circuit is open: fail fast instead of queueing on a dead API."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("circuit open")
        self.retry_after = retry_after


class Overloaded(Exception):
    """No upstream slot freed up within the wait bound."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("no upstream slot")
        self.retry_after = retry_after


class Deadline:
    """The time one request may spend, from its start, on everything upstream."""

    def __init__(self, seconds: float, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.seconds = seconds
        self.expires_at = clock() + seconds

    def remaining(self) -> float:
        return max(0.0, self.expires_at - self.clock())

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0


class BreakerState(enum.IntEnum):
    """Values of the ``ai_circuit_state`` gauge."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """Opens after ``failure_threshold`` consecutive failures, for ``reset_seconds``.

    Then it is half-open: ``half_open_probes`` calls may go through; a success closes
    it, a failure opens it again for another ``reset_seconds``. A probe that never
    reports (its thread was lost) is written off after ``reset_seconds``.
    """

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int,
        reset_seconds: float,
        clock: Clock = time.monotonic,
        half_open_probes: int = 1,
        on_change: Callable[[str, BreakerState], None] | None = None,
    ) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self.half_open_probes = half_open_probes
        self.clock = clock
        self.on_change = on_change
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probes: list[float] = []
        if on_change is not None:
            on_change(name, self._state)

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._current()

    def _current(self) -> BreakerState:
        if (
            self._state is BreakerState.OPEN
            and self.clock() - self._opened_at >= self.reset_seconds
        ):
            self._move(BreakerState.HALF_OPEN)
        return self._state

    def _move(self, state: BreakerState) -> None:
        if state is not self._state:
            self._state = state
            if state is BreakerState.OPEN:
                self._opened_at = self.clock()
            self._probes = []
            if self.on_change is not None:
                self.on_change(self.name, state)

    def allow(self) -> bool:
        with self._lock:
            state = self._current()
            if state is BreakerState.CLOSED:
                return True
            if state is BreakerState.OPEN:
                return False
            now = self.clock()
            self._probes = [t for t in self._probes if now - t < self.reset_seconds]
            if len(self._probes) < self.half_open_probes:
                self._probes.append(now)
                return True
            return False

    def retry_after(self) -> float:
        """Seconds until the circuit lets a probe through (0 when it would now)."""
        with self._lock:
            if self._current() is not BreakerState.OPEN:
                return 0.0
            return max(0.0, self.reset_seconds - (self.clock() - self._opened_at))

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            if self._current() is not BreakerState.CLOSED:
                self._move(BreakerState.CLOSED)

    def record_failure(self) -> None:
        with self._lock:
            state = self._current()
            if state is BreakerState.HALF_OPEN:
                self._move(BreakerState.OPEN)
                return
            self._failures += 1
            if state is BreakerState.CLOSED and self._failures >= self.failure_threshold:
                self._failures = 0
                self._move(BreakerState.OPEN)

    def cancel(self) -> None:
        """A permitted call that never reached the upstream: hand back its probe."""
        with self._lock:
            if self._probes:
                self._probes.pop()


class UpstreamSlots:
    """A bulkhead: at most ``limit`` upstream calls at once, each on its own thread.

    The request thread waits on the call's future with its deadline, so a stalled
    connection never holds a request past it; the slot stays taken until the call
    really ends, so the bound counts what the upstream actually sees.
    """

    def __init__(
        self,
        limit: int,
        *,
        on_enter: Callable[[], None] | None = None,
        on_exit: Callable[[], None] | None = None,
    ) -> None:
        self.limit = limit
        self._semaphore = threading.BoundedSemaphore(limit)
        self._executor = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="upstream")
        self._on_enter = on_enter
        self._on_exit = on_exit

    def submit(self, fn: Callable[[], T], wait: float) -> Future[T]:
        acquired = (
            self._semaphore.acquire(timeout=wait) if wait > 0 else self._semaphore.acquire(False)
        )
        if not acquired:
            raise Overloaded(retry_after=max(1.0, wait))
        if self._on_enter is not None:
            self._on_enter()
        context = contextvars.copy_context()

        def run() -> T:
            # Released before the future resolves, so a caller that saw the result can
            # count on the slot being free again.
            try:
                return fn()
            finally:
                self._release()

        try:
            return self._executor.submit(context.run, run)
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        if self._on_exit is not None:
            self._on_exit()
        self._semaphore.release()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    attempt_timeout: float = 20.0
    min_attempt_seconds: float = 1.0
    slot_wait: float = 2.0


class FullJitterBackoff:
    """``uniform(0, min(max, base * 2**(n-1)))``, but never less than the server asked."""

    def __init__(self, base: float, cap: float, rng: Callable[[], float]) -> None:
        self.base = base
        self.cap = cap
        self.rng = rng

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        ceiling = min(self.cap, self.base * 2 ** (retry_state.attempt_number - 1))
        delay = self.rng() * ceiling
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        asked = getattr(error, "retry_after", None) or 0.0
        return max(delay, asked)


class StopAtDeadline(tenacity.stop.stop_base):
    """Stop when the next sleep would leave too little time for another attempt."""

    def __init__(self, deadline: Deadline, min_attempt_seconds: float) -> None:
        self.deadline = deadline
        self.min_attempt_seconds = min_attempt_seconds

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        left = self.deadline.remaining() - retry_state.upcoming_sleep
        return left < max(self.min_attempt_seconds, 1e-3)


@dataclass
class CallState:
    """Per-request state across attempts."""

    model: str
    attempts: list[str] = field(default_factory=list)


Attempt = Callable[[str, float], T]
"""One upstream call: ``attempt(model, timeout_seconds)``."""


class ResilientCaller:
    """Retries, fallback, breaker and bulkhead around one kind of upstream call."""

    def __init__(
        self,
        *,
        primary: str,
        fallback: str | None,
        policy: RetryPolicy,
        breakers: dict[str, CircuitBreaker],
        slots: UpstreamSlots,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        rng: Callable[[], float] = random.random,
        on_retry: Callable[[str, str], None] | None = None,
        on_rejected: Callable[[str], None] | None = None,
    ) -> None:
        self.primary = primary
        self.fallback = fallback if fallback and fallback != primary else None
        self.policy = policy
        self.breakers = breakers
        self.slots = slots
        self.clock = clock
        self.sleep = sleep
        self.rng = rng
        self.on_retry = on_retry
        self.on_rejected = on_rejected

    def deadline(self, seconds: float) -> Deadline:
        return Deadline(seconds, self.clock)

    def call(self, attempt: Attempt[T], deadline: Deadline) -> tuple[T, str]:
        """Run ``attempt`` until it succeeds or the policy gives up; returns (result, model)."""
        state = CallState(model=self.primary)

        def before_sleep(retry_state: tenacity.RetryCallState) -> None:
            error = retry_state.outcome.exception() if retry_state.outcome else None
            if self.on_retry is not None and state.attempts:
                self.on_retry(state.attempts[-1], getattr(error, "outcome", "error"))

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.policy.max_attempts)
            | StopAtDeadline(deadline, self.policy.min_attempt_seconds),
            wait=FullJitterBackoff(self.policy.backoff_base, self.policy.backoff_max, self.rng),
            retry=tenacity.retry_if_exception(
                lambda error: isinstance(error, UpstreamFault) and error.retryable
            ),
            sleep=self.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        result = retrying(self._attempt_once, attempt, deadline, state)
        return result, state.attempts[-1]

    def _choose_model(self, state: CallState) -> str:
        candidates = [state.model]
        if state.model == self.primary and self.fallback:
            candidates.append(self.fallback)
        waits = []
        for model in candidates:
            breaker = self.breakers[model]
            if breaker.allow():
                return model
            if self.on_rejected is not None:
                self.on_rejected(model)
            waits.append(breaker.retry_after())
        raise CircuitOpen(retry_after=max(1.0, min(waits)))

    def _attempt_once(self, attempt: Attempt[T], deadline: Deadline, state: CallState) -> T:
        if deadline.expired:
            raise DeadlinePassed
        model = self._choose_model(state)
        breaker = self.breakers[model]
        state.attempts.append(model)
        timeout = min(self.policy.attempt_timeout, deadline.remaining())

        def run() -> T:
            try:
                result = attempt(model, timeout)
            except UpstreamFault as fault:
                if fault.breaker_failure:
                    breaker.record_failure()
                else:
                    breaker.record_success()
                raise
            except AnsweredUnusable:
                breaker.record_success()
                raise
            except BaseException:
                breaker.cancel()
                raise
            breaker.record_success()
            return result

        try:
            future = self.slots.submit(run, wait=min(self.policy.slot_wait, deadline.remaining()))
        except Overloaded:
            breaker.cancel()
            raise
        try:
            return future.result(timeout=deadline.remaining())
        except FutureTimeout:
            raise DeadlinePassed from None
        except UpstreamFault as fault:
            if fault.overloaded and model == self.primary and self.fallback:
                state.model = self.fallback
            raise
