"""Streamed ideas through the real gateway and ai-svc, from the fake Gemini writing slowly.

The fake streams its answer in several chunks spread over time and records when it sent
each one (``timeline``) and when the client closed the connection, so the tests compare
what the app received with what the model had written at that moment.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from testbed.fakes.gemini import FakeGemini
from testbed.images import photo
from testbed.metrics import total
from testbed.processes import Stack, start_stack

pytestmark = pytest.mark.integration

CHUNKS = 6
INTERVAL = 0.3
KEYS = {
    name: f"stream-test-key-{name:0<12}"
    for name in ("order", "gone", "free1", "free2", "retry", "cut", "quota", "replay", "think")
}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGemini]:
    with FakeGemini(latency=0.0) as running:
        yield running


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, fake: FakeGemini) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("streaming-stack")
    keys = tmp / "api-keys"
    keys.write_text("".join(f"{key}:{name}\n" for name, key in KEYS.items()))
    running = start_stack(
        tmp,
        workers=1,
        threads=2,
        ai_env={
            "GEMINI_API_KEY": "test-key-0123456789",
            "GEMINI_BASE_URL": fake.url,
            "GEMINI_FALLBACK_MODEL": "",
            "GEMINI_MAX_ATTEMPTS": "3",
            "GEMINI_BACKOFF_BASE_SECONDS": "0.05",
            "GEMINI_BACKOFF_MAX_SECONDS": "0.1",
            "AI_CACHE_SIZE": "0",
            "AI_STREAM_HEARTBEAT_SECONDS": "0.5",
        },
        gateway_env={
            "API_KEYS_FILE": str(keys),
            "AI_DAILY_QUOTA": "2/day",
            "STREAM_HEARTBEAT_SECONDS": "0.5",
        },
    )
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def slow_model(fake: FakeGemini) -> None:
    fake.control(
        latency=0, stream_chunks=CHUNKS, chunk_interval=INTERVAL, faults=[], reset_stats=True
    )


@dataclass
class Received:
    name: str
    data: Any
    at: float


@dataclass
class Stream:
    status: int
    headers: dict[str, str]
    events: list[Received] = field(default_factory=list)

    def named(self, name: str) -> list[Received]:
        return [event for event in self.events if event.name == name]


def read_stream(response: requests.Response) -> Stream:
    """Events with the wall-clock time each one arrived (the fake's clock is the same)."""
    stream = Stream(response.status_code, dict(response.headers))
    name, data = "message", []
    for line in response.iter_lines(chunk_size=1, decode_unicode=True):
        if line == "":
            if data:
                stream.events.append(Received(name, json.loads("\n".join(data)), time.time()))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data.append(line.removeprefix("data:").strip())
    return stream


def snap_stream(stack: Stack, key: str, seed: int, **headers: str) -> requests.Response:
    return requests.post(
        f"{stack.url}/v1/snaps",
        files={"image": ("p.jpg", photo(400, 300, colour=(seed, 90, 40)), "image/jpeg")},
        data={"template": "social_post", "count": "3"},
        headers={"Accept": "text/event-stream", "X-API-Key": KEYS[key], **headers},
        stream=True,
        timeout=30,
    )


def model_calls(fake: FakeGemini) -> list[dict[str, Any]]:
    return [r for r in fake.stats()["requests"] if r["method"].endswith("Content")]


def test_the_first_idea_arrives_before_the_model_wrote_its_last_chunk(
    stack: Stack, fake: FakeGemini
) -> None:
    response = snap_stream(stack, "order", 1)
    stream = read_stream(response)

    assert stream.status == 200
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    assert stream.headers["X-Accel-Buffering"] == "no"
    assert "Content-Length" not in stream.headers
    names = [event.name for event in stream.events]
    assert names == ["upload", "idea", "idea", "idea", "done"]
    ideas = stream.named("idea")
    assert [event.data["index"] for event in ideas] == [0, 1, 2]
    assert len({event.data["idea"]["title"] + event.data["idea"]["body"] for event in ideas}) == 3
    assert all(event.data["idea"]["title"] and event.data["idea"]["hashtags"] for event in ideas)
    done = stream.named("done")[0].data
    assert done["provider"] == "gemini"
    assert done["usage"]["output_tokens"] > 0
    assert done["upload"]["id"] == stream.named("upload")[0].data["id"]

    (call,) = model_calls(fake)
    assert call["sse"] is True
    timeline = call["timeline"]
    assert len(timeline) == CHUNKS
    assert ideas[0].at < timeline[-1]["sent_at"], "the first idea waited for the whole answer"
    stored = requests.get(f"{stack.url}/v1/uploads/{done['upload']['id']}", timeout=10)
    assert stored.status_code == 200


def test_a_client_that_leaves_stops_the_model_call_and_frees_the_gateway_thread(
    stack: Stack, fake: FakeGemini
) -> None:
    fake.control(stream_chunks=10, chunk_interval=0.5)
    upload = requests.post(
        f"{stack.url}/v1/uploads",
        files={"image": ("p.jpg", photo(500, 300, colour=(9, 9, 200)), "image/jpeg")},
        headers={"X-API-Key": KEYS["gone"]},
        timeout=30,
    ).json()
    cancelled_before = total(stack.ai.metrics_url, "ai_streams_cancelled_total")
    connection = http.client.HTTPConnection("127.0.0.1", stack.gateway.port, timeout=30)
    connection.request(
        "POST",
        "/v1/ideas",
        body=json.dumps({"upload_id": upload["id"], "count": 3}),
        headers={
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            "X-API-Key": KEYS["gone"],
        },
    )
    response = connection.getresponse()
    assert response.status == 200
    while not response.readline().startswith(b"event: idea"):
        pass
    left_at = time.time()
    connection.sock.close()
    connection.close()

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        (call,) = model_calls(fake)
        if call["client_closed_at"] is not None:
            break
        time.sleep(0.05)
    assert call["client_closed_at"] is not None, "the model connection stayed open"
    assert call["client_closed_at"] >= left_at
    sent = call["timeline"]
    assert len(sent) < call["chunks_planned"], "the model wrote its whole answer anyway"
    assert sent[-1]["output_tokens"] < call["output_tokens"]
    assert all(chunk["sent_at"] <= call["client_closed_at"] for chunk in sent)

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if total(stack.gateway.metrics_url, "gateway_streams_open") == 0:
            break
        time.sleep(0.05)
    assert total(stack.gateway.metrics_url, "gateway_streams_open") == 0
    assert total(stack.gateway.metrics_url, "gateway_streams_total", outcome="client_gone") >= 1
    assert total(stack.ai.metrics_url, "ai_streams_cancelled_total") == cancelled_before + 1
    # Both gateway threads (the gateway runs two) serve streams again, at the same time:
    # with one stuck, the second stream would wait for the first to end.
    fake.control(stream_chunks=CHUNKS, chunk_interval=INTERVAL)
    streams: dict[str, Stream] = {}

    def ideas(key: str) -> None:
        streams[key] = read_stream(
            requests.post(
                f"{stack.url}/v1/ideas",
                json={"upload_id": upload["id"], "count": 3},
                headers={"Accept": "text/event-stream", "X-API-Key": KEYS[key]},
                stream=True,
                timeout=30,
            )
        )

    both = [threading.Thread(target=ideas, args=(key,)) for key in ("free1", "free2")]
    for thread in both:
        thread.start()
    for thread in both:
        thread.join(30)
    first, second = streams["free1"], streams["free2"]
    assert [event.name for event in first.events][-1] == "done"
    assert [event.name for event in second.events][-1] == "done"
    assert first.named("idea")[0].at < second.named("done")[0].at
    assert second.named("idea")[0].at < first.named("done")[0].at


def test_a_failure_before_the_first_idea_is_retried(stack: Stack, fake: FakeGemini) -> None:
    fake.control(faults=["503"])
    stream = read_stream(snap_stream(stack, "retry", 3))

    assert [event.name for event in stream.events] == ["upload", "idea", "idea", "idea", "done"]
    calls = model_calls(fake)
    assert [call["outcome"] for call in calls] == ["error_503", "stop"]


def test_a_failure_after_the_first_idea_ends_the_stream_with_an_error(
    stack: Stack, fake: FakeGemini
) -> None:
    fake.control(faults=["cut"])
    stream = read_stream(snap_stream(stack, "cut", 4))

    names = [event.name for event in stream.events]
    assert names[0] == "upload"
    assert names[-1] == "error"
    assert "done" not in names
    assert stream.named("idea"), "the cut came after the first idea"
    error = stream.named("error")[0].data
    assert error["status"] == 503
    assert error["error"]["code"] == "upstream_unavailable"
    assert error["error"]["details"]["reason"] == "connection_error"
    assert error["error"]["request_id"] == stream.headers["X-Request-ID"]
    assert len(model_calls(fake)) == 1, "an idea was already out: no retry"
    upload_id = stream.named("upload")[0].data["id"]
    assert requests.get(f"{stack.url}/v1/uploads/{upload_id}", timeout=10).status_code == 404


def test_an_exhausted_quota_is_a_json_429_before_any_stream(stack: Stack, fake: FakeGemini) -> None:
    for seed in (5, 6):
        plain = requests.post(
            f"{stack.url}/v1/snaps",
            files={"image": ("p.jpg", photo(300, 300, colour=(seed, 1, 1)), "image/jpeg")},
            headers={"X-API-Key": KEYS["quota"]},
            timeout=30,
        )
        assert plain.status_code == 201, plain.text
    calls = len(model_calls(fake))
    refused = snap_stream(stack, "quota", 7)

    assert refused.status_code == 429
    assert refused.headers["Content-Type"].startswith("application/json")
    assert refused.json()["error"]["code"] == "quota_exceeded"
    assert int(refused.headers["Retry-After"]) > 0
    assert len(model_calls(fake)) == calls


def test_an_idempotent_replay_of_a_stream_is_the_stored_answer_as_a_stream(
    stack: Stack, fake: FakeGemini
) -> None:
    first = read_stream(snap_stream(stack, "replay", 8, **{"Idempotency-Key": "stream-replay-1"}))
    again = read_stream(snap_stream(stack, "replay", 8, **{"Idempotency-Key": "stream-replay-1"}))
    as_json = requests.post(
        f"{stack.url}/v1/snaps",
        files={"image": ("p.jpg", photo(400, 300, colour=(8, 90, 40)), "image/jpeg")},
        data={"template": "social_post", "count": "3"},
        headers={"X-API-Key": KEYS["replay"], "Idempotency-Key": "stream-replay-1"},
        timeout=30,
    )

    assert len(model_calls(fake)) == 1
    assert again.headers["Idempotency-Replayed"] == "true"
    assert again.headers["Content-Type"].startswith("text/event-stream")
    assert [event.name for event in again.events] == [event.name for event in first.events]
    assert [event.data for event in again.events] == [event.data for event in first.events]
    assert as_json.status_code == 201
    assert as_json.json()["ideas"] == [event.data["idea"] for event in first.named("idea")]


def test_the_contract_documents_the_event_streams(stack: Stack) -> None:
    document = requests.get(f"{stack.url}/openapi.json", timeout=10).json()
    schemas = document["components"]["schemas"]
    for path, status, names in (
        ("/v1/snaps", "200", ["upload", "idea", "done", "error"]),
        ("/v1/ideas", "200", ["idea", "done", "error"]),
    ):
        content = document["paths"][path]["post"]["responses"][status]["content"]
        events = content["text/event-stream"]["x-events"]
        assert list(events) == names
        for ref in events.values():
            assert ref["$ref"].rsplit("/", 1)[-1] in schemas
    assert "index" in schemas["IdeaEvent"]["required"]
    assert set(schemas["StreamError"]["required"]) == {"status", "error"}


def test_comment_heartbeats_keep_the_stream_alive_while_the_model_thinks(
    stack: Stack, fake: FakeGemini
) -> None:
    fake.control(latency=1.8)
    response = snap_stream(stack, "think", 9)
    before_first_idea: list[str] = []
    for line in response.iter_lines(chunk_size=1, decode_unicode=True):
        if line == "event: idea":
            break
        before_first_idea.append(line)
    response.close()

    heartbeats = [line for line in before_first_idea if line.startswith(":")]
    # 1.8 s of thinking at one comment per 0.5 s, plus the one that opens the stream.
    assert len(heartbeats) >= 3, before_first_idea
    assert before_first_idea[0] == "event: upload"
