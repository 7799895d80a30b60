"""The result cache (a repeated snap costs no Gemini call) and the GenAI client span."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import REGISTRY

from ai_svc.cache import CacheKey, MemoryCache
from ai_svc.providers.base import Generation, Idea, PreviewImage
from testbed.fakes.gemini import FakeGemini
from testbed.images import photo
from tests.ai_svc.conftest import AiHarness, FakeClock, Uploads

PRIMARY, FALLBACK = "gemini-2.5-flash", "gemini-2.5-flash-lite"
Build = Callable[..., AiHarness]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def generation(title: str) -> Generation:
    return Generation(
        ideas=[Idea(title=title, body="body", hashtags=["#a"])], provider="gemini", model="m"
    )


# ------------------------------------------------------------------ memory cache


def test_memory_cache_evicts_the_least_recently_used() -> None:
    cache = MemoryCache(max_entries=2, ttl_seconds=60)
    a, b, c = (CacheKey(sha256=s, preset="p", model="m") for s in "abc")
    cache.put(a, generation("a"))
    cache.put(b, generation("b"))
    assert cache.get(a) is not None  # a is now the most recent
    cache.put(c, generation("c"))
    assert cache.get(b) is None
    assert cache.get(a).ideas[0].title == "a"
    assert cache.get(c).ideas[0].title == "c"


def test_memory_cache_entries_expire() -> None:
    clock = FakeClock()
    cache = MemoryCache(max_entries=10, ttl_seconds=60, clock=clock)
    key = CacheKey(sha256="a", preset="p", model="m")
    cache.put(key, generation("a"))
    clock.advance(59)
    assert cache.get(key) is not None
    clock.advance(2)
    assert cache.get(key) is None
    assert len(cache) == 0


def test_the_key_names_person_image_preset_model_and_capture_time() -> None:
    key = CacheKey(sha256="abc", preset="story:calm:ko:3", model="gemini-2.5-flash")
    assert str(key) == "ideasnap:ideas:v2:anonymous:gemini-2.5-flash:story:calm:ko:3:abc:-"
    image = PreviewImage(
        data=b"", sha256="abc", captured_at=datetime.fromisoformat("2024-05-17T14:03:22+02:00")
    )
    alice = CacheKey.of(image, "story:calm:ko:3", "gemini-2.5-flash", "alice")
    assert str(alice).endswith(":gemini-2.5-flash:story:calm:ko:3:abc:2024-05-17T14:03:22+02:00")
    assert "alice" not in str(alice)
    assert alice != CacheKey.of(image, "story:calm:ko:3", "gemini-2.5-flash", "bob")
    assert alice != CacheKey.of(image, "story:calm:ko:3", "gemini-2.5-flash", None)


# ------------------------------------------------------------- through the service


@pytest.mark.integration
def test_a_repeated_snap_is_served_from_the_cache_with_zero_upstream_calls(
    gemini_app: Build, uploads: Uploads, fake_gemini: FakeGemini
) -> None:
    harness = gemini_app(ai_cache_size=64)
    hits_before = sample("ai_cache_requests_total", result="hit")
    misses_before = sample("ai_cache_requests_total", result="miss")

    first = harness.post(uploads.ids["photo"], template="story", count=2).get_json()
    calls = fake_gemini.stats()["calls"]
    again = harness.post(uploads.ids["photo"], template="story", count=2).get_json()

    assert calls == 1
    assert fake_gemini.stats()["calls"] == 1  # no Gemini call for the repeat
    assert first["cached"] is False
    assert again["cached"] is True
    assert again["ideas"] == first["ideas"]
    assert again["model"] == first["model"]
    assert again["usage"]["total_tokens"] == 0  # this answer cost nothing
    assert sample("ai_cache_requests_total", result="hit") == hits_before + 1
    assert sample("ai_cache_requests_total", result="miss") == misses_before + 1


@pytest.mark.integration
def test_the_same_photo_uploaded_again_hits_by_its_sha256(
    gemini_app: Build, uploads: Uploads, fake_gemini: FakeGemini
) -> None:
    harness = gemini_app(ai_cache_size=64)
    image = photo(800, 600, colour=(10, 200, 90))
    first_id = uploads.store("twin-1", image)
    second_id = uploads.store("twin-2", image)
    assert first_id != second_id

    harness.post(first_id)
    repeat = harness.post(second_id).get_json()

    assert repeat["cached"] is True
    assert repeat["upload_id"] == second_id
    assert fake_gemini.stats()["calls"] == 1


@pytest.mark.integration
def test_another_preset_is_another_answer(
    gemini_app: Build, uploads: Uploads, fake_gemini: FakeGemini
) -> None:
    harness = gemini_app(ai_cache_size=64)
    harness.post(uploads.ids["photo"], language="en")
    other = harness.post(uploads.ids["photo"], language="ja").get_json()
    assert other["cached"] is False
    assert fake_gemini.stats()["calls"] == 2


@pytest.mark.integration
def test_failures_are_not_cached(
    gemini_app: Build, uploads: Uploads, fake_gemini: FakeGemini
) -> None:
    harness = gemini_app(ai_cache_size=64)
    fake_gemini.control(faults=["blocked"])
    assert harness.post(uploads.ids["photo"]).status_code == 422
    retry = harness.post(uploads.ids["photo"])
    assert retry.status_code == 200
    assert retry.get_json()["cached"] is False


# ---------------------------------------------------------------------- the span


@pytest.mark.integration
def test_each_model_call_is_a_genai_client_span(
    gemini_app: Build,
    uploads: Uploads,
    fake_gemini: FakeGemini,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    tracer_provider, exporter = spans
    harness = gemini_app(tracer_provider=tracer_provider)
    fake_gemini.control(faults=[f"503@{PRIMARY}"])

    assert harness.post(uploads.ids["photo"]).status_code == 200

    failed, answered = exporter.get_finished_spans()
    assert failed.name == f"generate_content {PRIMARY}"
    assert failed.kind is SpanKind.CLIENT
    assert failed.attributes["gen_ai.operation.name"] == "generate_content"
    assert failed.attributes["gen_ai.provider.name"] == "gcp.gemini"
    assert failed.attributes["gen_ai.request.model"] == PRIMARY
    assert failed.attributes["error.type"] == "503"
    assert failed.status.status_code is StatusCode.ERROR

    assert answered.name == f"generate_content {FALLBACK}"
    attributes = answered.attributes
    assert attributes["gen_ai.request.model"] == FALLBACK
    assert attributes["gen_ai.response.model"] == FALLBACK
    assert tuple(attributes["gen_ai.response.finish_reasons"]) == ("stop",)
    assert attributes["gen_ai.usage.input_tokens"] > 258
    assert attributes["gen_ai.usage.output_tokens"] > 0
    assert attributes["gen_ai.request.max_tokens"] > 0
    assert attributes["gen_ai.output.type"] == "json"
    assert attributes["server.port"] == fake_gemini.port
    assert "error.type" not in attributes
    assert answered.status.status_code is not StatusCode.ERROR


@pytest.mark.integration
def test_a_blocked_answer_marks_its_span(
    gemini_app: Build,
    uploads: Uploads,
    fake_gemini: FakeGemini,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    tracer_provider, exporter = spans
    harness = gemini_app(tracer_provider=tracer_provider)
    fake_gemini.control(faults=["safety"])

    assert harness.post(uploads.ids["photo"]).status_code == 422

    (span,) = exporter.get_finished_spans()
    assert span.attributes["error.type"] == "content_blocked"
    assert tuple(span.attributes["gen_ai.response.finish_reasons"]) == ("safety",)
