"""Every Gemini fault, and what the client of POST /v1/ideas gets for it.

ai-svc runs in this process (so backoff sleeps and the breaker's clock are the test's),
the google-genai client talks HTTP to the fake Gemini API, and the preview comes from
the real upload-svc.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from testbed.fakes.gemini import FakeGemini
from tests.ai_svc.conftest import AiHarness, Uploads

pytestmark = pytest.mark.integration

PRIMARY, FALLBACK = "gemini-2.5-flash", "gemini-2.5-flash-lite"
Build = Callable[..., AiHarness]


def models_called(fake: FakeGemini) -> list[str]:
    return [request["model"] for request in fake.stats()["requests"]]


def assert_ideas(response: Any, count: int = 3) -> dict[str, Any]:
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert len(body["ideas"]) == count
    assert body["provider"] == "gemini"
    assert body["disclaimer"]
    return body


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == code
    assert error["request_id"]
    return error


# --------------------------------------------------------------------- the happy path


def test_ideas_come_from_gemini_with_usage_and_disclaimer(
    gemini_app: Build, uploads: Uploads, fake_gemini: FakeGemini
) -> None:
    harness = gemini_app()
    body = assert_ideas(harness.post(uploads.ids["photo"], language="ko", count=3))

    assert body["model"] == PRIMARY
    assert body["cached"] is False
    assert body["preset"] == {
        "template": "social_post",
        "tone": "friendly",
        "language": "ko",
        "count": 3,
    }
    usage = body["usage"]
    assert usage["input_tokens"] > 258
    assert usage["output_tokens"] > 0
    assert usage["total_tokens"] == (
        usage["input_tokens"] + usage["output_tokens"] + usage["thinking_tokens"]
    )
    assert all(tag.startswith("#") for idea in body["ideas"] for tag in idea["hashtags"])
    assert any("\uac00" <= char <= "\ud7a3" for char in body["ideas"][0]["body"])


def test_the_model_sees_the_768px_preview_never_the_original(
    gemini_app: Build, uploads: Uploads, fake_gemini: FakeGemini
) -> None:
    harness = gemini_app()
    assert_ideas(harness.post(uploads.ids["photo"]))

    (request,) = fake_gemini.stats()["requests"]
    (image,) = request["images"]
    assert (image["width"], image["height"]) == (768, 576)  # the original is 1200 x 900
    assert image["tokens"] == 258
    assert image["bytes"] < uploads.records["photo"]["size"]
    assert request["has_schema"] is True
    assert request["response_mime_type"] == "application/json"


def test_the_sdk_does_not_retry_on_its_own(
    gemini_app: Build, uploads: Uploads, fake_gemini: FakeGemini
) -> None:
    """One fault, one upstream call per attempt: retries are ours alone."""
    harness = gemini_app(gemini_fallback_model="", gemini_max_attempts=1)
    fake_gemini.control(faults=["503"])
    assert_error(harness.post(uploads.ids["photo"]), 503, "upstream_unavailable")
    assert fake_gemini.stats()["calls"] == 1


# ---------------------------------------------------------------- transient faults


def test_429_is_retried_after_the_servers_retry_delay_on_the_fallback(
    gemini_app: Build, uploads: Uploads, fake_gemini: FakeGemini
) -> None:
    harness = gemini_app(rng=0.0)
    fake_gemini.control(faults=[{"kind": "429", "retry_delay": "2.5s"}])

    body = assert_ideas(harness.post(uploads.ids["photo"]))

    assert models_called(fake_gemini) == [PRIMARY, FALLBACK]
    assert body["model"] == FALLBACK
    assert harness.clock.sleeps == [2.5]


def test_429_that_persists_is_503_with_retry_after(
    gemini_app: Build, uploads: Uploads, fake_gemini: FakeGemini
) -> None:
    harness = gemini_app(gemini_fallback_model="")
    fake_gemini.control(faults=[{"kind": "429", "retry_delay": "3s", "times": 3}])

    response = harness.post(uploads.ids["photo"])

    error = assert_error(response, 503, "upstream_unavailable")
    assert error["details"] == {"reason": "rate_limited"}
    assert response.headers["Retry-After"] == "3"
    assert fake_gemini.stats()["calls"] == 3


@pytest.mark.parametrize("fault", ["408", "500", "502", "504"])
def test_server_faults_are_retried_on_the_same_model(
    gemini_app: Build, uploads: Uploads, fake_gemini: FakeGemini, fault: str
) -> None:
    harness = gemini_app()
    fake_gemini.control(faults=[fault])

    body = assert_ideas(harness.post(uploads.ids["photo"]))

    assert models_called(fake_gemini) == [PRIMARY, PRIMARY]
    assert body["model"] == PRIMARY
    assert len(harness.clock.sleeps) == 1


def test_503_overloaded_falls_back_to_the_fallback_model(
    gemini_app: Build, uploads: Uploads, fake_gemini: FakeGemini
) -> None:
    harness = gemini_app()
    fake_gemini.control(faults=[f"503@{PRIMARY}"])

    body = assert_ideas(harness.post(uploads.ids["photo"]))

    assert models_called(fake_gemini) == [PRIMARY, FALLBACK]
    assert body["model"] == FALLBACK


def test_503_everywhere_is_503_upstream_unavailable_with_retry_after(
    gemini_app: Build, uploads: Uploads, fake_gemini: FakeGemini
) -> None:
    harness = gemini_app()
    fake_gemini.control(faults=[{"kind": "503", "times": 5}])

    response = harness.post(uploads.ids["photo"])

    assert_error(response, 503, "upstream_unavailable")
    assert int(response.headers["Retry-After"]) >= 1
    assert models_called(fake_gemini) == [PRIMARY, FALLBACK, FALLBACK]


def test_a_timed_out_attempt_is_retried(
    gemini_app: Build, uploads: Uploads, fake_gemini: FakeGemini
) -> None:
    harness = gemini_app(gemini_timeout_seconds=0.3)
    fake_gemini.control(faults=[{"kind": "timeout", "seconds": 2}])

    body = assert_ideas(harness.post(uploads.ids["photo"]))

    assert models_called(fake_gemini) == [PRIMARY, PRIMARY]
    assert body["model"] == PRIMARY


def test_timeouts_until_the_deadline_are_504_upstream_timeout(
    gemini_app: Build, uploads: Uploads, fake_gemini: FakeGemini
) -> None:
    harness = gemini_app(
        gemini_timeout_seconds=0.3,
        ai_deadline_seconds=2.0,
        gemini_min_attempt_seconds=0.1,
        gemini_fallback_model="",
    )
    fake_gemini.control(faults=[{"kind": "timeout", "seconds": 3, "times": 3}])

    assert_error(harness.post(uploads.ids["photo"]), 504, "upstream_timeout")
    assert fake_gemini.stats()["calls"] == 3


def test_the_request_is_answered_at_its_deadline_while_gemini_still_hangs(
    gemini_app: Build, uploads: Uploads, fake_gemini: FakeGemini
) -> None:
    """The per-attempt timeout is long; only the overall deadline can end this."""
    harness = gemini_app(gemini_timeout_seconds=60, ai_deadline_seconds=1.0)
    fake_gemini.control(faults=[{"kind": "timeout", "seconds": 5}])

    assert_error(harness.post(uploads.ids["photo"]), 504, "upstream_timeout")
    # Answered while the upstream call was still open: no thread waited on it.
    assert fake_gemini.stats()["in_flight"] == 1


def test_a_slow_gemini_within_the_deadline_still_answers(
    gemini_app: Build, uploads: Uploads, fake_gemini: FakeGemini
) -> None:
    harness = gemini_app(gemini_timeout_seconds=5, ai_deadline_seconds=10)
    fake_gemini.control(latency=0.4)

    assert_ideas(harness.post(uploads.ids["photo"]))
    assert fake_gemini.stats()["calls"] == 1


def test_a_gemini_slower_than_the_deadline_is_504(
    gemini_app: Build, uploads: Uploads, fake_gemini: FakeGemini
) -> None:
    harness = gemini_app(
        gemini_timeout_seconds=0.5,
        ai_deadline_seconds=1.5,
        gemini_min_attempt_seconds=0.2,
        gemini_fallback_model="",
    )
    fake_gemini.control(latency=3)

    assert_error(harness.post(uploads.ids["photo"]), 504, "upstream_timeout")
    assert fake_gemini.stats()["calls"] >= 2  # timed-out attempts were retried in time


def test_a_reset_connection_is_retried(
    gemini_app: Build, uploads: Uploads, fake_gemini: FakeGemini
) -> None:
    harness = gemini_app()
    fake_gemini.control(faults=["reset"])

    assert_ideas(harness.post(uploads.ids["photo"]))
    assert fake_gemini.stats()["outcomes"]["reset"] == 1
    assert fake_gemini.stats()["calls"] == 2


def test_gemini_unreachable_is_503_upstream_unavailable(
    gemini_app: Build, uploads: Uploads, fake_gemini: FakeGemini
) -> None:
    harness = gemini_app()
    fake_gemini.stop()

    response = harness.post(uploads.ids["photo"])

    error = assert_error(response, 503, "upstream_unavailable")
    assert error["details"] == {"reason": "connection_error"}
    assert "Retry-After" in response.headers


# ------------------------------------------------------------------------- safety


@pytest.mark.parametrize(
    ("fault", "reason", "stage"),
    [
        ("blocked", "safety", "prompt"),
        ({"kind": "blocked", "reason": "PROHIBITED_CONTENT"}, "prohibited_content", "prompt"),
        ("safety", "safety", "answer"),
        ("recitation", "recitation", "answer"),
        ("prohibited", "prohibited_content", "answer"),
    ],
)
def test_blocked_content_is_422_with_the_reason_and_no_retry(
    gemini_app: Build,
    uploads: Uploads,
    fake_gemini: FakeGemini,
    *,
    fault: Any,
    reason: str,
    stage: str,
) -> None:
    harness = gemini_app()
    fake_gemini.control(faults=[fault])

    error = assert_error(harness.post(uploads.ids["photo"]), 422, "content_blocked")

    assert error["details"] == {"reason": reason, "stage": stage}
    assert fake_gemini.stats()["calls"] == 1


# ----------------------------------------------------------------- invalid answers


@pytest.mark.parametrize("fault", ["max_tokens", "invalid_json", "wrong_schema", "empty"])
def test_one_bad_answer_is_asked_again_with_a_stricter_budget(
    gemini_app: Build, uploads: Uploads, fake_gemini: FakeGemini, fault: str
) -> None:
    harness = gemini_app(gemini_thinking_budget=512)
    fake_gemini.control(faults=[fault])

    assert_ideas(harness.post(uploads.ids["photo"]))

    first, second = fake_gemini.stats()["requests"]
    assert first["thinking_budget"] == 512
    assert second["thinking_budget"] == 0
    assert second["max_output_tokens"] < first["max_output_tokens"]
    assert "Keep each body under" in second["prompt_text"]


@pytest.mark.parametrize(
    ("fault", "reason"),
    [("max_tokens", "max_tokens"), ("invalid_json", "malformed"), ("wrong_schema", "schema")],
)
def test_two_bad_answers_are_502_upstream_invalid_output(
    gemini_app: Build, uploads: Uploads, fake_gemini: FakeGemini, fault: str, reason: str
) -> None:
    harness = gemini_app()
    fake_gemini.control(faults=[fault, fault])

    error = assert_error(harness.post(uploads.ids["photo"]), 502, "upstream_invalid_output")

    assert error["details"] == {"reason": reason}
    assert fake_gemini.stats()["calls"] == 2


def test_thinking_that_eats_the_output_budget_is_recovered_from(
    gemini_app: Build, uploads: Uploads, fake_gemini: FakeGemini
) -> None:
    """Dynamic thinking can spend the whole maxOutputTokens; the strict retry thinks not."""
    harness = gemini_app(gemini_thinking_budget=None)
    fake_gemini.control(thinking_tokens=50_000)

    body = assert_ideas(harness.post(uploads.ids["photo"]))

    first, second = fake_gemini.stats()["requests"]
    assert first["finish_reason"] == "MAX_TOKENS"
    assert first["thinking_budget"] is None
    assert second["thinking_budget"] == 0
    # Both calls were billed, and the answer says so.
    assert body["usage"]["thinking_tokens"] == first["thinking_tokens"]
    assert body["usage"]["input_tokens"] == first["prompt_tokens"] + second["prompt_tokens"]


def test_a_thinking_budget_leaves_room_for_the_answer(
    gemini_app: Build, uploads: Uploads, fake_gemini: FakeGemini
) -> None:
    harness = gemini_app(gemini_thinking_budget=512)
    fake_gemini.control(thinking_tokens=50_000)

    body = assert_ideas(harness.post(uploads.ids["photo"]))

    assert fake_gemini.stats()["calls"] == 1
    assert body["usage"]["thinking_tokens"] == 512


def test_a_refused_request_is_502_and_not_retried(
    gemini_app: Build, uploads: Uploads, fake_gemini: FakeGemini
) -> None:
    harness = gemini_app()
    fake_gemini.control(api_key="a-different-key")

    assert_error(harness.post(uploads.ids["photo"]), 502, "upstream_error")
    assert fake_gemini.stats()["calls"] == 1


# ------------------------------------------------------------------ circuit breaker


def test_the_breaker_fails_fast_while_gemini_fails_then_recovers(
    gemini_app: Build, uploads: Uploads, fake_gemini: FakeGemini
) -> None:
    harness = gemini_app(
        gemini_fallback_model="",
        gemini_breaker_failures=2,
        gemini_breaker_reset_seconds=30,
        gemini_max_attempts=3,
    )
    fake_gemini.control(faults=[{"kind": "500", "times": 10}])

    first = harness.post(uploads.ids["photo"])
    error = assert_error(first, 503, "upstream_unavailable")
    assert error["details"] == {"reason": "circuit_open"}
    assert fake_gemini.stats()["calls"] == 2  # the third attempt was not made

    harness.clock.advance(10)
    second = harness.post(uploads.ids["photo"])
    assert_error(second, 503, "upstream_unavailable")
    assert second.headers["Retry-After"] == "20"
    assert fake_gemini.stats()["calls"] == 2  # failed fast: Gemini was not called

    fake_gemini.control(faults=[])
    harness.clock.advance(20)  # half-open: one probe goes through and closes it
    assert_ideas(harness.post(uploads.ids["photo"]))
    assert_ideas(harness.post(uploads.ids["photo"]))
    assert fake_gemini.stats()["calls"] == 4


# ------------------------------------------------------------------------ bulkhead


def test_concurrent_upstream_calls_are_bounded_per_pod(
    gemini_app: Build, uploads: Uploads, fake_gemini: FakeGemini
) -> None:
    harness = gemini_app(gemini_max_in_flight=2, web_concurrency=1, gemini_slot_wait_seconds=0)
    fake_gemini.control(latency=1.0)
    answers: list[Any] = []
    lock = threading.Lock()

    def snap() -> None:
        response = harness.post(uploads.ids["photo"])
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=snap) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    statuses = sorted(response.status_code for response in answers)
    assert statuses == [200, 200, 503, 503, 503]
    refused = [response for response in answers if response.status_code == 503]
    assert all(r.get_json()["error"]["code"] == "overloaded" for r in refused)
    assert all(int(r.headers["Retry-After"]) >= 1 for r in refused)
    assert fake_gemini.stats()["max_in_flight"] == 2
