"""Ideas as Server-Sent Events: each idea goes out the moment the model has written it whole.

``POST /v1/ideas`` with ``Accept: text/event-stream`` answers with events instead of one
JSON document: ``idea`` (``{"index", "idea"}``) per idea, then ``done`` (the JSON answer
without its ideas) or ``error`` (``{"status", "error": {...}}``, the envelope and code the
JSON answer would have carried). Comment lines (``: keep-alive``) keep the connection
alive while the model thinks. What can fail before the model is asked (a bad request,
no such upload) is still an ordinary JSON error, before any stream starts.

Three threads take part in one stream: the request thread writes events and watches the
client, a driver thread runs the provider (retries, fallback, breaker, all as for a JSON
answer), and the provider's upstream slot thread reads the model's own stream. When the
client goes away (the gateway closed the connection), the request thread cancels the
:class:`StreamSink`, which shuts the model connection down at once: a client that left
costs no further model tokens.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import queue
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import structlog
from flask import Response
from werkzeug.datastructures import MIMEAccept

from ai_svc import telemetry
from ai_svc.cache import CacheKey, lookup
from ai_svc.ideas import IdeaService
from ai_svc.presets import Preset
from ai_svc.providers.base import Generation, Idea, InvalidOutput, PreviewImage, Usage
from ai_svc.resilience import Deadline
from chassis.caller import current_caller
from chassis.disclaimer import disclaimer_for
from chassis.errors import ApiError

log = structlog.get_logger(__name__)

EVENT_STREAM = "text/event-stream"
HEARTBEAT = b": keep-alive\n\n"
# How often the request thread looks at its client while nothing else happens.
WATCH_SECONDS = 0.1

CURRENT_SINK: contextvars.ContextVar[StreamSink | None] = contextvars.ContextVar(
    "ai_svc_stream_sink", default=None
)


def wants_stream(accept: MIMEAccept) -> bool:
    """Only an explicit ``text/event-stream`` asks for events; ``*/*`` keeps JSON."""
    return any(value == EVENT_STREAM and quality > 0 for value, quality in accept)


def sse(event: str, data: Any) -> bytes:
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event}\ndata: {payload}\n\n".encode()


def stream_headers() -> dict[str, str]:
    return {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class StreamCancelled(Exception):
    """The client went away: the model call was stopped on purpose (not a fault)."""


class IdeaParser:
    """Finds each complete idea object in the model's JSON as the text arrives.

    The response schema is ``{"ideas": [{...}, ...]}``: an idea is an object whose
    parent is the array inside the top-level object. Strings (and escapes in them) are
    tracked, so braces inside a body never count. A complete object is validated with
    the same model as a whole answer; one that does not validate is the same
    ``invalid_output`` a JSON answer would get.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self.text = ""
        self.seen = 0
        self._stack: list[str] = []
        self._in_string = False
        self._escape = False
        self._start: int | None = None

    def _complete_objects(self, text: str) -> list[str]:
        complete: list[str] = []
        base = len(self.text)
        self.text += text
        for offset, character in enumerate(text):
            if self._in_string:
                if self._escape:
                    self._escape = False
                elif character == "\\":
                    self._escape = True
                elif character == '"':
                    self._in_string = False
                continue
            if character == '"':
                self._in_string = True
            elif character in "{[":
                if character == "{" and self._stack == ["{", "["]:
                    self._start = base + offset
                self._stack.append(character)
            elif character in "}]":
                if self._stack:
                    self._stack.pop()
                if character == "}" and self._stack == ["{", "["] and self._start is not None:
                    complete.append(self.text[self._start : base + offset + 1])
                    self._start = None
        return complete

    def feed(self, text: str) -> list[Idea]:
        complete = self._complete_objects(text)
        ideas = []
        for raw in complete:
            if self.seen >= self.count:
                break
            try:
                ideas.append(Idea.model_validate(json.loads(raw)))
            except ValueError as error:
                reason = "malformed" if isinstance(error, json.JSONDecodeError) else "schema"
                raise InvalidOutput(reason, str(error)[:200]) from None
            self.seen += 1
        return ideas


class StreamSink:
    """Where a provider sends ideas as they are written, and how it is told to stop.

    ``attach`` is called with the model's HTTP response as soon as its headers arrive
    (an httpx2 event hook), so ``cancel`` can shut that connection down from another
    thread; ``detach`` when the answer was read whole, so a finished connection goes
    back to the pool untouched.
    """

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.emitted = 0
        self.usage = Usage()
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def emit(self, idea: Idea) -> None:
        if self.cancelled:
            raise StreamCancelled
        self.events.put(("idea", idea))
        self.emitted += 1

    def pause(self, seconds: float) -> None:
        if self._cancelled.wait(seconds):
            raise StreamCancelled

    def attach(self, response: Any) -> None:
        stream = getattr(response, "extensions", {}).get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        with self._lock:
            self._socket = sock
            if self.cancelled:
                self._shutdown()

    def detach(self) -> None:
        with self._lock:
            self._socket = None

    def cancel(self) -> None:
        with self._lock:
            self._cancelled.set()
            self._shutdown()

    def _shutdown(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
            self._socket = None


def capture_response(response: Any) -> None:
    """httpx2 response hook: hands a streamed model response to the stream it belongs to."""
    sink = CURRENT_SINK.get()
    if sink is not None:
        sink.attach(response)


def client_gone(sock: socket.socket | None) -> bool:
    """The peer closed its side: readable with nothing to read (never blocks)."""
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        # A TLS socket refuses MSG_PEEK: leave detection to failed writes.
        return False


@dataclass(frozen=True)
class StreamOptions:
    heartbeat_seconds: float
    local_pace_seconds: float


class IdeaStreams:
    """Builds the event stream for one request; one driver pool per worker."""

    def __init__(
        self,
        service: IdeaService,
        options: StreamOptions,
        *,
        drivers: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.options = options
        self.clock = clock
        self.executor = ThreadPoolExecutor(max_workers=drivers, thread_name_prefix="stream")

    def respond(
        self,
        upload_id: str,
        preset: Preset,
        *,
        request_id: str | None,
        client: socket.socket | None,
    ) -> Response:
        started = self.clock()
        deadline = Deadline(self.service.deadline_seconds, self.service.clock)
        caller = current_caller()
        image = self.service.preview(upload_id, deadline, caller)
        provider = self.service.provider
        key = CacheKey.of(image, preset.key, provider.model, caller.user)
        cached = lookup(self.service.cache, key)
        head = {"upload_id": upload_id, "preset": preset.model_dump()}
        body = self.events(
            head,
            image,
            preset,
            deadline,
            key,
            cached=cached,
            started=started,
            request_id=request_id,
            client=client,
        )
        return Response(body, mimetype=EVENT_STREAM, headers=stream_headers())

    def drive(
        self, image: PreviewImage, preset: Preset, deadline: Deadline, sink: StreamSink
    ) -> None:
        """On a driver thread: the provider's answer, each idea sent to ``sink`` as written."""
        provider = self.service.provider
        CURRENT_SINK.set(sink)
        try:
            if getattr(provider, "streams", False):
                generation = provider.generate(
                    image, preset, self.service.catalogue, deadline, sink=sink
                )
            else:
                generation = provider.generate(image, preset, self.service.catalogue, deadline)
                for number, idea in enumerate(generation.ideas):
                    if number:
                        sink.pause(self.options.local_pace_seconds)
                    sink.emit(idea)
        except StreamCancelled:
            sink.events.put(("cancelled", None))
        except ApiError as error:
            sink.events.put(("error", error))
        except Exception as error:
            log.exception("stream_failed", error=type(error).__qualname__)
            sink.events.put(("error", ApiError(500, "internal_error", "The request failed.")))
        else:
            sink.events.put(("done", generation))

    def events(
        self,
        head: dict[str, Any],
        image: PreviewImage,
        preset: Preset,
        deadline: Deadline,
        key: CacheKey,
        *,
        cached: Generation | None,
        started: float,
        request_id: str | None,
        client: socket.socket | None,
    ) -> Iterator[bytes]:
        sink = StreamSink()
        label = self.start(sink, image, preset, deadline, cached)
        sent = 0
        finished = False
        last_write = self.clock()
        try:
            yield HEARTBEAT  # the headers and a first byte now: the client knows it is on
            while True:
                kind, value = self.next_event(sink, client, last_write)
                if kind == "heartbeat":
                    last_write = self.clock()
                    yield HEARTBEAT
                elif kind == "gone":
                    log.info("stream_client_gone", ideas_sent=sent)
                    return
                elif kind == "idea":
                    if sent == 0:
                        telemetry.FIRST_IDEA.labels(label).observe(self.clock() - started)
                    yield sse("idea", {"index": sent, "idea": value.model_dump()})
                    sent += 1
                    last_write = self.clock()
                elif kind == "done":
                    finished = True
                    yield self.done(head, value, key, fresh=cached is None, started=started)
                    return
                elif kind == "error":
                    finished = True
                    outcome = "blocked" if value.code == "content_blocked" else "error"
                    telemetry.IDEAS.labels(label, outcome).inc()
                    yield sse("error", error_event(value, request_id))
                    return
                else:
                    return
        finally:
            # Also after an error (the deadline, say): no model call outlives its stream.
            sink.cancel()
            if not finished:
                telemetry.STREAMS_CANCELLED.labels(label).inc()
                log.info("stream_cancelled", ideas_sent=sent)

    def start(
        self,
        sink: StreamSink,
        image: PreviewImage,
        preset: Preset,
        deadline: Deadline,
        cached: Generation | None,
    ) -> str:
        """A cache hit is every event at once; otherwise a driver thread asks the model."""
        if cached is not None:
            generation = cached.model_copy(update={"cached": True, "usage": Usage()})
            for idea in generation.ideas:
                sink.events.put(("idea", idea))
            sink.events.put(("done", generation))
            return generation.provider
        context = contextvars.copy_context()
        self.executor.submit(context.run, self.drive, image, preset, deadline, sink)
        return self.service.provider.name

    def next_event(
        self, sink: StreamSink, client: socket.socket | None, quiet_since: float
    ) -> tuple[str, Any]:
        """The provider's next event, or ``heartbeat`` when it is time, or ``gone``."""
        while True:
            try:
                return sink.events.get(timeout=WATCH_SECONDS)
            except queue.Empty:
                if client_gone(client):
                    return "gone", None
                if self.clock() - quiet_since >= self.options.heartbeat_seconds:
                    return "heartbeat", None

    def done(
        self,
        head: dict[str, Any],
        generation: Generation,
        key: CacheKey,
        *,
        fresh: bool,
        started: float,
    ) -> bytes:
        """The closing event: the JSON answer without its ideas (they were sent already)."""
        if fresh:
            self.service.cache.put(key, generation)
        telemetry.IDEAS.labels(generation.provider, "ok").inc()
        telemetry.ANSWER_DURATION.labels(generation.provider, "stream").observe(
            self.clock() - started
        )
        log.info(
            "ideas_answered",
            upload_id=head["upload_id"],
            provider=generation.provider,
            model=generation.model,
            cached=generation.cached,
            streamed=True,
            input_tokens=generation.usage.input_tokens,
            output_tokens=generation.usage.output_tokens,
        )
        done = generation.model_dump(exclude={"ideas"})
        disclaimer = disclaimer_for(head["preset"]["language"]).statement
        return sse("done", {**head, **done, "disclaimer": disclaimer})


def error_event(error: ApiError, request_id: str | None) -> dict[str, Any]:
    """The JSON error envelope with its status: what the JSON answer would have been."""
    body: dict[str, Any] = {"code": error.code, "message": error.message, "request_id": request_id}
    if error.details:
        body["details"] = error.details
    event: dict[str, Any] = {"status": error.status, "error": body}
    if error.headers.get("Retry-After"):
        event["retry_after"] = int(error.headers["Retry-After"])
    return event
