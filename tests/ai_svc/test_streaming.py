"""ai-svc's event stream: the incremental idea parser, the events, and the Gemini spans."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes
from opentelemetry.semconv.attributes import error_attributes, server_attributes
from opentelemetry.trace import SpanKind

from ai_svc.providers.base import InvalidOutput
from ai_svc.streaming import IdeaParser
from testbed.fakes.gemini import FakeGemini
from tests.ai_svc.conftest import AiHarness, Uploads

Build = Callable[..., AiHarness]
ANSWER = {
    "ideas": [
        {
            "title": "One {brace}",
            "body": 'A "quoted" } body \\" with [brackets]',
            "hashtags": ["#a"],
        },
        {"title": "Two", "body": "Second", "hashtags": ["#b", "#c"]},
        {"title": "Three", "body": "Third", "hashtags": []},
    ]
}
KNOWN_NAMES = {
    value
    for module in (gen_ai_attributes, server_attributes, error_attributes)
    for name, value in vars(module).items()
    if name.isupper() and isinstance(value, str)
}


@pytest.mark.parametrize("size", [1, 2, 3, 7, 50, 10_000])
def test_every_idea_is_found_once_whole_however_the_text_is_cut(size: int) -> None:
    text = json.dumps(ANSWER, ensure_ascii=False)
    parser = IdeaParser(count=3)
    found = []
    for start in range(0, len(text), size):
        found += parser.feed(text[start : start + size])
    assert [idea.title for idea in found] == ["One {brace}", "Two", "Three"]
    assert found[0] == IdeaParser(3).feed(text)[0]
    assert found[0].body == ANSWER["ideas"][0]["body"]


def test_an_idea_is_reported_when_its_object_closes_not_before() -> None:
    text = json.dumps(ANSWER)
    end_of_first = text.index("}", text.index('"hashtags"')) + 1
    parser = IdeaParser(count=3)
    assert parser.feed(text[: end_of_first - 1]) == []
    assert [idea.title for idea in parser.feed(text[end_of_first - 1 : end_of_first])] == [
        "One {brace}"
    ]


def test_an_idea_that_breaks_the_schema_is_invalid_output() -> None:
    parser = IdeaParser(count=3)
    with pytest.raises(InvalidOutput) as raised:
        parser.feed('{"ideas": [{"title": "", "body": "x"}')
    assert raised.value.reason == "schema"


def test_ideas_past_the_count_are_not_sent() -> None:
    parser = IdeaParser(count=2)
    assert len(parser.feed(json.dumps(ANSWER))) == 2


def events_of(body: str) -> list[tuple[str, dict]]:
    found = []
    for block in body.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if lines:
            name = lines[0].removeprefix("event: ")
            found.append((name, json.loads(lines[1].removeprefix("data: "))))
    return found


@pytest.fixture
def http_spans(spans: tuple[TracerProvider, InMemorySpanExporter]) -> Iterator[None]:
    """httpx2 instrumented as the chassis does it, recording into this test's provider."""
    instrumentor = HTTPX2ClientInstrumentor()
    was_on = instrumentor.is_instrumented_by_opentelemetry
    if was_on:
        instrumentor.uninstrument()
    instrumentor.instrument(tracer_provider=spans[0])
    yield
    instrumentor.uninstrument()
    if was_on:
        instrumentor.instrument()


@pytest.mark.integration
@pytest.mark.parametrize("streamed", [True, False])
def test_the_gemini_call_is_a_genai_client_span_with_its_http_span_inside(
    gemini_app: Build,
    uploads: Uploads,
    fake_gemini: FakeGemini,
    spans: tuple[TracerProvider, InMemorySpanExporter],
    http_spans: None,
    *,
    streamed: bool,
) -> None:
    provider, exporter = spans
    harness = gemini_app(tracer_provider=provider)
    fake_gemini.control(stream_chunks=4)
    headers = {"Accept": "text/event-stream"} if streamed else {}
    response = harness.app.test_client().post(
        "/v1/ideas", json={"upload_id": uploads.ids["photo"], "count": 2}, headers=headers
    )
    assert response.status_code == 200
    if streamed:
        names = [name for name, _ in events_of(response.get_data(as_text=True))]
        assert names == ["idea", "idea", "done"]

    finished = exporter.get_finished_spans()
    (genai,) = [span for span in finished if span.name.startswith("generate_content ")]
    assert genai.kind is SpanKind.CLIENT
    attributes = dict(genai.attributes)
    assert set(attributes) <= KNOWN_NAMES, set(attributes) - KNOWN_NAMES
    assert attributes[gen_ai_attributes.GEN_AI_OPERATION_NAME] == "generate_content"
    assert attributes[gen_ai_attributes.GEN_AI_PROVIDER_NAME] == "gcp.gemini"
    assert attributes[gen_ai_attributes.GEN_AI_REQUEST_STREAM] is streamed
    assert attributes[gen_ai_attributes.GEN_AI_USAGE_OUTPUT_TOKENS] > 0
    assert attributes[server_attributes.SERVER_PORT] == fake_gemini.port
    if streamed:
        assert attributes[gen_ai_attributes.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] >= 0

    http = [span for span in finished if span.kind is SpanKind.CLIENT and span is not genai]
    assert len(http) == 1, [span.name for span in finished]
    assert http[0].parent is not None
    assert http[0].parent.span_id == genai.context.span_id
    assert http[0].context.trace_id == genai.context.trace_id
    method = "streamGenerateContent" if streamed else "generateContent"
    # The instrumentation's default semantic conventions name the URL http.url.
    url = http[0].attributes.get("url.full") or http[0].attributes.get("http.url")
    assert f":{method}" in str(url)


def test_the_chassis_instruments_the_transport_google_genai_uses() -> None:
    from google.genai import _api_client
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    from chassis import tracing

    assert _api_client._get_http_client_backend() == "httpx2"
    # The chassis instruments every HTTP client library at once; this process's own
    # clients (the tests' requests) must be as they were afterwards.
    instrumentors = [HTTPX2ClientInstrumentor(), HTTPXClientInstrumentor(), RequestsInstrumentor()]
    were_on = [instrumentor.is_instrumented_by_opentelemetry for instrumentor in instrumentors]
    for instrumentor, was_on in zip(instrumentors, were_on, strict=True):
        if was_on:
            instrumentor.uninstrument()
    try:
        tracing._instrument_outgoing_http()
        assert instrumentors[0].is_instrumented_by_opentelemetry
    finally:
        for instrumentor, was_on in zip(instrumentors, were_on, strict=True):
            if instrumentor.is_instrumented_by_opentelemetry:
                instrumentor.uninstrument()
            if was_on:
                instrumentor.instrument()


@pytest.mark.integration
def test_a_cache_hit_streams_every_idea_at_once_with_no_model_call(
    gemini_app: Build, uploads: Uploads, fake_gemini: FakeGemini
) -> None:
    harness = gemini_app(ai_cache_size=64)
    fake_gemini.control(stream_chunks=4, chunk_interval=0.2)
    client = harness.app.test_client()
    request = {"upload_id": uploads.ids["portrait"], "count": 3}
    first = events_of(
        client.post("/v1/ideas", json=request, headers={"Accept": "text/event-stream"}).get_data(
            as_text=True
        )
    )
    again = events_of(
        client.post("/v1/ideas", json=request, headers={"Accept": "text/event-stream"}).get_data(
            as_text=True
        )
    )

    assert fake_gemini.stats()["calls"] == 1
    assert [name for name, _ in again] == ["idea", "idea", "idea", "done"]
    assert [data for name, data in again if name == "idea"] == [
        data for name, data in first if name == "idea"
    ]
    assert first[-1][1]["cached"] is False
    assert again[-1][1]["cached"] is True
    assert again[-1][1]["usage"]["output_tokens"] == 0
