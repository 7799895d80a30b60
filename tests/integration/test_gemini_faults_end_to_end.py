"""Gemini faults as the app sees them: through the gateway, from the fake Gemini API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from testbed.fakes.gemini import FakeGemini
from testbed.images import photo
from testbed.processes import Stack, start_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGemini]:
    with FakeGemini(latency=0.0) as running:
        yield running


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, fake: FakeGemini) -> Iterator[Stack]:
    running = start_stack(
        tmp_path_factory.mktemp("gemini-stack"),
        workers=1,
        threads=4,
        ai_env={
            "GEMINI_API_KEY": "test-key-0123456789",
            "GEMINI_BASE_URL": fake.url,
            "GEMINI_FALLBACK_MODEL": "",
            "GEMINI_MAX_ATTEMPTS": "1",
            "GEMINI_BREAKER_FAILURES": "2",
            "GEMINI_BREAKER_RESET_SECONDS": "60",
            "AI_CACHE_SIZE": "0",
        },
        gateway_env={"RATE_LIMIT_AI": "1000/minute", "AI_DAILY_QUOTA": "1000/day"},
    )
    yield running
    running.stop()


def snap(stack: Stack, seed: int) -> requests.Response:
    return requests.post(
        f"{stack.url}/v1/snaps",
        files={"image": ("p.jpg", photo(400, 300, colour=(seed % 256, 80, 40)), "image/jpeg")},
        data={"template": "story", "language": "ja"},
        timeout=30,
    )


def test_gemini_answers_through_the_gateway(stack: Stack, fake: FakeGemini) -> None:
    response = snap(stack, 1)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["provider"] == "gemini"
    assert body["usage"]["input_tokens"] > 0
    assert body["ideas"]


def test_blocked_content_reaches_the_app_with_its_reason(stack: Stack, fake: FakeGemini) -> None:
    fake.control(faults=["safety"])
    response = snap(stack, 2)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "content_blocked"
    assert error["details"]["reason"] == "safety"


def test_open_circuit_is_a_503_with_retry_after_and_its_reason(
    stack: Stack, fake: FakeGemini
) -> None:
    fake.control(faults=["503", "503"])
    for seed in (3, 4):
        failed = snap(stack, seed)
        assert failed.status_code == 503
        assert failed.json()["error"]["code"] == "upstream_unavailable"
    calls_before = fake.stats()
    fast = snap(stack, 5)
    assert fast.status_code == 503
    error = fast.json()["error"]
    assert error["details"]["reason"] == "circuit_open"
    assert 0 < int(fast.headers["Retry-After"]) <= 60
    assert fake.stats() == calls_before, "an open circuit must not call Gemini"
