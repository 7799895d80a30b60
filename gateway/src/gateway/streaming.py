"""Streamed ideas at the edge: ``Accept: text/event-stream`` on ``/v1/snaps`` and ``/v1/ideas``.

The gateway asks ai-svc for its event stream and relays it event by event: each event
is written (and so flushed by gunicorn) the moment it arrives, with no Content-Length
and ``X-Accel-Buffering: no`` so no proxy in front holds it back. A snap's stream starts
with an ``upload`` event (the stored upload, as in the JSON answer).

Everything that fails before the stream starts (limits and quota, a refused photo, an
unknown upload, a bad preset) is the ordinary JSON error. Once streaming, a failure is
an ``error`` event carrying the same envelope and code, and a failed snap's upload is
deleted again, as for JSON.

While the model thinks, the gateway writes comment lines (``: keep-alive``) every
``STREAM_HEARTBEAT_SECONDS``. A reader thread reads ai-svc's stream; the request thread
waits on it, and watches its own client: when the client goes away, the upstream
connection is shut down at once, ai-svc sees it closed and stops the model call, and
the request thread is free again.

The final answer (the JSON document the same request would have got) is kept for
``Idempotency-Key`` replays, which a streaming client receives as a stream.
"""

from __future__ import annotations

import contextlib
import json
import queue
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import requests
import structlog
import urllib3
from flask import Response, g, request, stream_with_context

from chassis.errors import ApiError
from chassis.requests_context import current_request_id
from gateway.auth import current_caller
from gateway.metrics import (
    SNAPS,
    STREAMS,
    STREAMS_OPEN,
    TIME_TO_FIRST_IDEA,
    TIME_TO_WHOLE_ANSWER,
)
from gateway.proxy import (
    CHUNK,
    Upstream,
    body_for_upstream,
    call,
    headers_for_client,
    headers_for_upstream,
    read_answer,
    upstream_error,
)
from gateway.settings import GatewaySettings
from gateway.snaps import discard_upload, json_or_error, record_snap

log = structlog.get_logger(__name__)

EVENT_STREAM = "text/event-stream"
HEARTBEAT = b": keep-alive\n\n"
WATCH_SECONDS = 0.1
ANSWER_LIMIT = 1024 * 1024
JSON_FIRST = ("upload", "upload_id", "preset")

KeepAnswer = Callable[[Response], None]
OnDone = Callable[[dict[str, Any]], dict[str, Any]]
"""Called with the final answer when ``done`` arrives; returns fields to add to it."""
DropAnswer = Callable[[], None]


def wants_stream() -> bool:
    """Only an explicit ``text/event-stream`` asks for events; ``*/*`` keeps JSON."""
    return any(value == EVENT_STREAM and quality > 0 for value, quality in request.accept_mimetypes)


def sse(event: str, data: Any) -> bytes:
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event}\ndata: {payload}\n\n".encode()


@dataclass
class Event:
    name: str
    data: str


def parse_events(chunks: Iterator[bytes]) -> Iterator[Event]:
    """Server-Sent Events from a byte stream; comment lines (heartbeats) are skipped."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk.replace(b"\r\n", b"\n")
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            name, data = "message", []
            for line in block.decode("utf-8").split("\n"):
                if line.startswith(":") or not line:
                    continue
                key, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if key == "event":
                    name = value
                elif key == "data":
                    data.append(value)
            if data:
                yield Event(name, "\n".join(data))


def json_answer(payload: dict[str, Any], status: int) -> Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return Response(body, status=status, mimetype="application/json")


def ordered_answer(head: dict[str, Any], ideas: list[Any], done: dict[str, Any]) -> dict:
    """The JSON document the same request answers without streaming, in its key order."""
    answer = {**head}
    answer |= {key: done[key] for key in JSON_FIRST if key in done}
    answer["ideas"] = ideas
    answer |= {key: value for key, value in done.items() if key not in answer}
    return answer


class EventStream(Response):
    """An event-stream answer whose final JSON answer is known only at its end.

    :class:`gateway.idempotency.Idempotency` calls :meth:`defer_final_answer` to have
    the answer kept when the stream completes, or the key freed when it does not.
    """

    keep: KeepAnswer | None = None
    drop: DropAnswer | None = None

    def defer_final_answer(self, keep: KeepAnswer, drop: DropAnswer) -> None:
        self.keep = keep
        self.drop = drop


def event_stream(body: Iterator[bytes]) -> EventStream:
    response = EventStream(body, status=200, mimetype=EVENT_STREAM, direct_passthrough=True)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response


def client_gone(sock: socket.socket | None) -> bool:
    """The client closed its side: readable with nothing to read (never blocks)."""
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        # TLS sockets refuse MSG_PEEK: a failed write tells instead.
        return False


def shut(response: requests.Response) -> None:
    """Close an upstream response now, waking a thread blocked reading it."""
    connection = getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    response.close()


@dataclass
class Outcome:
    """What the relayed stream ended with; ``answer`` is set when it completed."""

    ideas: list[Any] = field(default_factory=list)
    answer: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    how: str = "client_gone"


class Relay:
    """One relayed stream: ai-svc's events to the client, heartbeats, disconnect handling."""

    def __init__(
        self,
        upstream: Upstream,
        response: requests.Response,
        *,
        route: str,
        head: dict[str, Any],
        prefix: list[bytes],
        heartbeat_seconds: float,
        started: float,
        client: socket.socket | None,
        request_id: str | None,
        on_done: OnDone | None = None,
    ) -> None:
        self.upstream = upstream
        self.response = response
        self.route = route
        self.head = head
        self.prefix = prefix
        self.heartbeat_seconds = heartbeat_seconds
        self.started = started
        self.client = client
        self.request_id = request_id
        self.on_done = on_done
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.outcome = Outcome()

    def read(self) -> None:
        """On the reader thread: ai-svc's events into the queue, then how it ended."""
        try:
            for event in parse_events(self.response.raw.stream(CHUNK, decode_content=False)):
                self.events.put(("event", event))
            self.events.put(("end", None))
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as error:
            self.events.put(("broken", error))

    def next_item(self, quiet_since: float) -> tuple[str, Any]:
        while True:
            try:
                return self.events.get(timeout=WATCH_SECONDS)
            except queue.Empty:
                if client_gone(self.client):
                    return "gone", None
                if time.monotonic() - quiet_since >= self.heartbeat_seconds:
                    return "heartbeat", None

    def run(self) -> Iterator[bytes]:
        reader = threading.Thread(target=self.read, name="sse-relay", daemon=True)
        reader.start()
        STREAMS_OPEN.inc()
        last_write = time.monotonic()
        try:
            yield from self.prefix
            yield HEARTBEAT
            while self.outcome.how == "client_gone":
                kind, value = self.next_item(last_write)
                if kind == "heartbeat":
                    yield HEARTBEAT
                elif kind == "gone":
                    break
                elif kind == "event":
                    chunk = self.relayed(value)
                    if chunk:
                        yield chunk
                else:
                    yield self.broken(value)
                last_write = time.monotonic()
        finally:
            STREAMS_OPEN.dec()
            STREAMS.labels(self.route, self.outcome.how).inc()
            if self.outcome.how != "done":
                shut(self.response)
            else:
                self.response.close()
            TIME_TO_WHOLE_ANSWER.labels(self.route, self.outcome.how).observe(
                time.monotonic() - self.started
            )
            log.info("stream_ended", outcome=self.outcome.how, ideas=len(self.outcome.ideas))

    def relayed(self, event: Event) -> bytes:
        try:
            data = json.loads(event.data)
        except ValueError:
            return self.broken(ValueError("an event that is not JSON"))
        if event.name == "idea":
            if not self.outcome.ideas:
                TIME_TO_FIRST_IDEA.labels(self.route).observe(time.monotonic() - self.started)
            self.outcome.ideas.append(data.get("idea"))
            return sse("idea", data)
        if event.name == "done":
            answer = ordered_answer(self.head, self.outcome.ideas, data)
            if self.on_done is not None:
                try:
                    added = self.on_done(answer)
                except ApiError as error:
                    self.outcome.how = "error"
                    self.outcome.error = stream_error(error.status, error.code, error.message)
                    return sse("error", self.outcome.error)
                answer |= added
                data = {**data, **added}
            self.outcome.answer = answer
            self.outcome.how = "done"
            return sse("done", {**self.head, **data})
        if event.name == "error":
            self.outcome.error = data
            self.outcome.how = "error"
            if isinstance(data.get("error"), dict):
                data["error"]["request_id"] = self.request_id
            return sse("error", data)
        return b""

    def broken(self, error: object) -> bytes:
        """ai-svc's stream ended without its last event: the client hears a clean 502."""
        self.outcome.how = "upstream_broken"
        log.warning("upstream_stream_interrupted", upstream=self.upstream.name, error=str(error))
        return sse("error", stream_error(502, "bad_gateway", "A backing service failed."))


def stream_error(status: int, code: str, message: str) -> dict[str, Any]:
    return {
        "status": status,
        "error": {"code": code, "message": message, "request_id": current_request_id()},
    }


def started_at() -> float:
    started = g.get("chassis_started")
    return time.monotonic() - (time.perf_counter() - started) if started else time.monotonic()


def is_event_stream(response: requests.Response) -> bool:
    return (
        response.status_code == 200
        and response.headers.get("Content-Type", "").split(";")[0].strip() == EVENT_STREAM
    )


def open_ideas_stream(ai: Upstream, settings: GatewaySettings, **kwargs: Any) -> requests.Response:
    response = call(
        ai,
        "POST",
        "/v1/ideas",
        timeout=(ai.client.timeout[0], settings.ai_read_timeout_seconds),
        stream=True,
        **kwargs,
    )
    if response.status_code >= 500:
        raise upstream_error(ai, response)
    return response


def ideas_stream(ai: Upstream, settings: GatewaySettings) -> Response:
    """``POST /v1/ideas`` as events; ai-svc's errors before its stream stay JSON."""
    started = started_at()
    response = open_ideas_stream(
        ai,
        settings,
        data=body_for_upstream(settings.max_json_bytes),
        headers={**headers_for_upstream(), "Accept": EVENT_STREAM},
    )
    if not is_event_stream(response):
        body = read_answer(ai, response, ANSWER_LIMIT)
        return Response(body, status=response.status_code, headers=headers_for_client(response))
    relay = Relay(
        ai,
        response,
        route="/v1/ideas",
        head={},
        prefix=[],
        heartbeat_seconds=settings.stream_heartbeat_seconds,
        started=started,
        client=request.environ.get("gunicorn.socket"),
        request_id=current_request_id(),
    )
    answer = event_stream(iter(()))

    def body() -> Iterator[bytes]:
        try:
            yield from relay.run()
        finally:
            finish(answer, relay.outcome, status=200)

    # The body runs after the view returned: it keeps the request's context, so the
    # clean-up calls go out as the same caller.
    answer.response = stream_with_context(body())
    return answer


def snap_stream(
    upload: dict[str, Any],
    fields: dict[str, Any],
    forwarded_for: str,
    *,
    uploads: Upstream,
    ai: Upstream,
    library: Upstream,
    settings: GatewaySettings,
) -> Response:
    """The ideas step of ``POST /v1/snaps`` as events, after the ``upload`` event.

    A signed-in snap is recorded in the history when ``done`` arrives, before the
    ``done`` event is written, so that event carries its ``snap_id``.
    """
    started = started_at()
    signed_in = current_caller().user is not None
    try:
        response = open_ideas_stream(
            ai,
            settings,
            json={"upload_id": upload["id"], **fields},
            headers={"X-Forwarded-For": forwarded_for, "Accept": EVENT_STREAM},
        )
        if not is_event_stream(response):
            ideas = json_or_error(ai, response)
            answer_json: dict[str, Any] = {"upload": upload, **ideas}
            if signed_in:
                answer_json["snap_id"] = record_snap(library, upload, ideas)
            SNAPS.labels("succeeded").inc()
            return replayed_stream(json_answer(answer_json, 201))
    except BaseException:
        discard_upload(uploads, upload["id"])
        raise

    def recorded(answer: dict[str, Any]) -> dict[str, Any]:
        return {"snap_id": record_snap(library, upload, answer)}

    relay = Relay(
        ai,
        response,
        route="/v1/snaps",
        head={"upload": upload},
        prefix=[sse("upload", upload)],
        heartbeat_seconds=settings.stream_heartbeat_seconds,
        started=started,
        client=request.environ.get("gunicorn.socket"),
        request_id=current_request_id(),
        on_done=recorded if signed_in else None,
    )
    answer = event_stream(iter(()))

    # The request context stays up while streaming: discarding or recording the snap
    # calls services as the verified caller.
    @stream_with_context
    def body() -> Iterator[bytes]:
        try:
            yield from relay.run()
        finally:
            if relay.outcome.answer is not None:
                SNAPS.labels("succeeded").inc()
            else:
                discard_upload(uploads, upload["id"])
            finish(answer, relay.outcome, status=201)

    # The body runs after the view returned: it keeps the request's context, so the
    # clean-up calls go out as the same caller.
    answer.response = stream_with_context(body())
    return answer


def finish(answer: EventStream, outcome: Outcome, *, status: int) -> None:
    """Keep the final answer for idempotent replays, or free the key."""
    if outcome.answer is not None and answer.keep is not None:
        answer.keep(json_answer(outcome.answer, status))
    elif outcome.answer is None and answer.drop is not None:
        answer.drop()


def replayed_stream(stored: Response) -> Response:
    """A stored JSON answer (an idempotent replay, say) told as the events it was."""
    if not wants_stream() or stored.status_code >= 300 or stored.mimetype != "application/json":
        return stored
    try:
        payload = json.loads(stored.get_data())
    except ValueError:
        return stored
    if not isinstance(payload, dict) or not isinstance(payload.get("ideas"), list):
        return stored
    events: list[bytes] = []
    if "upload" in payload:
        events.append(sse("upload", payload["upload"]))
    events += [sse("idea", {"index": n, "idea": idea}) for n, idea in enumerate(payload["ideas"])]
    events.append(sse("done", {key: value for key, value in payload.items() if key != "ideas"}))
    response = event_stream(iter(events))
    for name, value in stored.headers.items():
        if name.lower() not in {"content-type", "content-length"}:
            response.headers[name] = value
    return response
