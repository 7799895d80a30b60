"""Retries, backoff, deadline, breaker and bulkhead, on a clock the test controls."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from ai_svc.resilience import (
    AnsweredUnusable,
    BreakerState,
    CircuitBreaker,
    CircuitOpen,
    Deadline,
    DeadlinePassed,
    Overloaded,
    ResilientCaller,
    RetryPolicy,
    UpstreamFault,
    UpstreamSlots,
)
from tests.ai_svc.conftest import FakeClock

PRIMARY, FALLBACK = "primary-model", "fallback-model"


def overloaded(retry_after: float | None = None) -> UpstreamFault:
    return UpstreamFault(
        "server_error", "503", retryable=True, overloaded=True, retry_after=retry_after
    )


def server_error() -> UpstreamFault:
    return UpstreamFault("server_error", "500", retryable=True)


def client_error() -> UpstreamFault:
    return UpstreamFault("client_error", "400", retryable=False, status=400)


class Script:
    """An upstream that answers from a script: faults to raise, then "ok"."""

    def __init__(self, *faults: UpstreamFault | None) -> None:
        self.faults = list(faults)
        self.calls: list[tuple[str, float]] = []

    def __call__(self, model: str, timeout: float) -> str:
        self.calls.append((model, timeout))
        if self.faults:
            fault = self.faults.pop(0)
            if fault is not None:
                raise fault
        return f"answer from {model}"

    @property
    def models(self) -> list[str]:
        return [model for model, _ in self.calls]


def make_caller(
    clock: FakeClock,
    *,
    fallback: str | None = FALLBACK,
    rng: float = 1.0,
    slots: UpstreamSlots | None = None,
    failures: int = 5,
    retries: list[tuple[str, str]] | None = None,
    rejected: list[str] | None = None,
    **policy: float,
) -> ResilientCaller:
    models = [PRIMARY] + ([fallback] if fallback else [])
    breakers = {
        model: CircuitBreaker(model, failure_threshold=failures, reset_seconds=30, clock=clock)
        for model in models
    }
    return ResilientCaller(
        primary=PRIMARY,
        fallback=fallback,
        policy=RetryPolicy(
            max_attempts=int(policy.pop("max_attempts", 3)),
            backoff_base=policy.pop("backoff_base", 0.5),
            backoff_max=policy.pop("backoff_max", 8.0),
            attempt_timeout=policy.pop("attempt_timeout", 20.0),
            min_attempt_seconds=policy.pop("min_attempt_seconds", 1.0),
            slot_wait=policy.pop("slot_wait", 0.5),
        ),
        breakers=breakers,
        slots=slots or UpstreamSlots(4),
        clock=clock,
        sleep=clock.sleep,
        rng=lambda: rng,
        on_retry=(lambda model, reason: retries.append((model, reason)))
        if retries is not None
        else None,
        on_rejected=rejected.append if rejected is not None else None,
    )


# ------------------------------------------------------------------------ deadline


def test_deadline_counts_down_on_its_clock() -> None:
    clock = FakeClock()
    deadline = Deadline(10, clock)
    clock.advance(4)
    assert deadline.remaining() == pytest.approx(6)
    clock.advance(7)
    assert deadline.remaining() == 0
    assert deadline.expired


# ------------------------------------------------------------------------- breaker


def test_breaker_opens_after_consecutive_failures_only() -> None:
    clock = FakeClock()
    changes: list[tuple[str, BreakerState]] = []
    breaker = CircuitBreaker(
        "m",
        failure_threshold=3,
        reset_seconds=30,
        clock=clock,
        on_change=lambda name, state: changes.append((name, state)),
    )
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()  # a success resets the count
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()

    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    assert breaker.retry_after() == pytest.approx(30)
    clock.advance(12)
    assert breaker.retry_after() == pytest.approx(18)
    assert changes == [("m", BreakerState.CLOSED), ("m", BreakerState.OPEN)]


def test_half_open_lets_one_probe_through_and_its_result_decides() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("m", failure_threshold=1, reset_seconds=30, clock=clock)
    breaker.record_failure()
    clock.advance(30)

    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # everyone else still fails fast
    breaker.record_failure()  # the probe failed: open again, for a full period
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_after() == pytest.approx(30)

    clock.advance(30)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()
    assert breaker.allow()


def test_a_lost_or_cancelled_probe_does_not_wedge_the_breaker() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("m", failure_threshold=1, reset_seconds=30, clock=clock)
    breaker.record_failure()
    clock.advance(30)
    assert breaker.allow()
    breaker.cancel()  # the probe never reached the upstream
    assert breaker.allow()
    assert not breaker.allow()
    clock.advance(31)  # that probe never reported back either
    assert breaker.allow()


# -------------------------------------------------------------------------- retries


def test_retryable_faults_are_retried_with_full_jitter_backoff() -> None:
    clock = FakeClock()
    script = Script(server_error(), server_error())
    retries: list[tuple[str, str]] = []
    caller = make_caller(clock, rng=1.0, retries=retries)

    result, model = caller.call(script, caller.deadline(30))

    assert (result, model) == ("answer from primary-model", PRIMARY)
    assert len(script.calls) == 3
    # rng() = 1.0 gives the top of each full-jitter window: base * 2**(n-1).
    assert clock.sleeps == [0.5, 1.0]
    assert retries == [(PRIMARY, "server_error"), (PRIMARY, "server_error")]


def test_full_jitter_draws_anywhere_from_zero_to_the_cap() -> None:
    clock = FakeClock()
    caller = make_caller(clock, rng=0.25, max_attempts=6, backoff_max=2.0)
    caller.call(Script(*(server_error() for _ in range(5))), caller.deadline(60))
    assert clock.sleeps == [0.125, 0.25, 0.5, 0.5, 0.5]


def test_attempts_are_bounded() -> None:
    clock = FakeClock()
    script = Script(*(server_error() for _ in range(5)))
    caller = make_caller(clock, max_attempts=3, fallback=None)
    with pytest.raises(UpstreamFault) as caught:
        caller.call(script, caller.deadline(60))
    assert caught.value.outcome == "server_error"
    assert len(script.calls) == 3


def test_client_errors_are_not_retried() -> None:
    clock = FakeClock()
    script = Script(client_error())
    caller = make_caller(clock)
    with pytest.raises(UpstreamFault) as caught:
        caller.call(script, caller.deadline(30))
    assert caught.value.outcome == "client_error"
    assert len(script.calls) == 1
    assert clock.sleeps == []


def test_the_servers_retry_delay_is_a_floor_for_the_backoff() -> None:
    clock = FakeClock()
    caller = make_caller(clock, rng=0.0, fallback=None)
    caller.call(Script(overloaded(retry_after=2.0)), caller.deadline(30))
    assert clock.sleeps == [2.0]


def test_no_sleep_or_attempt_runs_past_the_deadline() -> None:
    clock = FakeClock()
    script = Script(overloaded(retry_after=30.0))
    caller = make_caller(clock, fallback=None)

    with pytest.raises(UpstreamFault) as caught:
        caller.call(script, caller.deadline(10))

    assert caught.value.retry_after == 30.0  # answered at once, with the server's wish
    assert clock.sleeps == []
    assert len(script.calls) == 1


def test_each_attempt_gets_at_most_the_time_that_is_left() -> None:
    clock = FakeClock()
    script = Script(server_error(), server_error())
    caller = make_caller(clock, rng=1.0, attempt_timeout=20.0, fallback=None)
    caller.call(script, caller.deadline(5))
    # 5 s in all: 0.5 s and 1 s of backoff come out of what the later attempts get.
    assert [timeout for _, timeout in script.calls] == [5.0, 4.5, 3.5]


# ------------------------------------------------------------------------- fallback


def test_an_overloaded_primary_hands_over_to_the_fallback_model() -> None:
    clock = FakeClock()
    script = Script(overloaded())
    caller = make_caller(clock)
    result, model = caller.call(script, caller.deadline(30))
    assert script.models == [PRIMARY, FALLBACK]
    assert model == FALLBACK
    assert result == "answer from fallback-model"


def test_other_server_errors_retry_the_same_model() -> None:
    clock = FakeClock()
    script = Script(server_error())
    caller = make_caller(clock)
    caller.call(script, caller.deadline(30))
    assert script.models == [PRIMARY, PRIMARY]


def test_an_open_primary_circuit_goes_straight_to_the_fallback() -> None:
    clock = FakeClock()
    rejected: list[str] = []
    caller = make_caller(clock, failures=1, rejected=rejected)
    caller.breakers[PRIMARY].record_failure()
    script = Script()

    _, model = caller.call(script, caller.deadline(30))

    assert model == FALLBACK
    assert script.models == [FALLBACK]
    assert rejected == [PRIMARY]


def test_all_circuits_open_fails_fast_with_when_to_come_back() -> None:
    clock = FakeClock()
    caller = make_caller(clock, failures=1)
    caller.breakers[PRIMARY].record_failure()
    clock.advance(10)
    caller.breakers[FALLBACK].record_failure()
    script = Script()

    with pytest.raises(CircuitOpen) as caught:
        caller.call(script, caller.deadline(30))

    assert script.calls == []
    assert caught.value.retry_after == pytest.approx(20)


def test_failures_open_the_breaker_mid_request_and_stop_the_calls() -> None:
    clock = FakeClock()
    script = Script(*(server_error() for _ in range(5)))
    caller = make_caller(clock, failures=2, fallback=None, max_attempts=5)
    with pytest.raises(CircuitOpen):
        caller.call(script, caller.deadline(60))
    assert len(script.calls) == 2
    assert caller.breakers[PRIMARY].state is BreakerState.OPEN


def test_client_errors_do_not_count_against_the_breaker() -> None:
    clock = FakeClock()
    caller = make_caller(clock, failures=1, fallback=None)
    with pytest.raises(UpstreamFault):
        caller.call(Script(client_error()), caller.deadline(30))
    assert caller.breakers[PRIMARY].state is BreakerState.CLOSED


def test_an_answer_that_cannot_be_used_is_proof_of_health() -> None:
    """A blocked or malformed answer came from a working upstream: it resets the count."""
    clock = FakeClock()
    caller = make_caller(clock, failures=2, fallback=None, max_attempts=1)

    def unusable(model: str, timeout: float) -> str:
        raise AnsweredUnusable("blocked")

    with pytest.raises(UpstreamFault):
        caller.call(Script(server_error()), caller.deadline(30))
    with pytest.raises(AnsweredUnusable):
        caller.call(unusable, caller.deadline(30))
    with pytest.raises(UpstreamFault):
        caller.call(Script(server_error()), caller.deadline(30))
    assert caller.breakers[PRIMARY].state is BreakerState.CLOSED


# ------------------------------------------------------------------------- bulkhead


def blocking_attempt(release: threading.Event, started: threading.Event) -> Callable:
    def attempt(model: str, timeout: float) -> str:
        started.set()
        release.wait(10)
        return "late answer"

    return attempt


def test_the_bulkhead_refuses_past_its_bound() -> None:
    entered: list[int] = []
    slots = UpstreamSlots(1, on_enter=lambda: entered.append(1), on_exit=entered.pop)
    clock = FakeClock()
    caller = make_caller(clock, slots=slots, slot_wait=0.0)
    release, started = threading.Event(), threading.Event()
    worker = threading.Thread(
        target=lambda: caller.call(blocking_attempt(release, started), caller.deadline(30))
    )
    worker.start()
    try:
        assert started.wait(5)
        assert entered == [1]
        with pytest.raises(Overloaded):
            caller.call(Script(), caller.deadline(30))
    finally:
        release.set()
        worker.join(5)
    assert entered == []
    assert caller.call(Script(), caller.deadline(30))[0] == "answer from primary-model"
    slots.shutdown()


def test_the_request_thread_stops_waiting_at_its_deadline() -> None:
    """Real time here: the attempt hangs; the caller must give up at the deadline."""
    slots = UpstreamSlots(2)
    caller = ResilientCaller(
        primary=PRIMARY,
        fallback=None,
        policy=RetryPolicy(attempt_timeout=30, min_attempt_seconds=0.0),
        breakers={
            PRIMARY: CircuitBreaker(PRIMARY, failure_threshold=5, reset_seconds=30),
        },
        slots=slots,
    )
    release, started = threading.Event(), threading.Event()
    try:
        with pytest.raises(DeadlinePassed):
            caller.call(blocking_attempt(release, started), caller.deadline(0.2))
        # The caller is back while the upstream call is still running on its own thread.
        assert started.is_set()
        assert not release.is_set()
    finally:
        release.set()
        slots.shutdown()
