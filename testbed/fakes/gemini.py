"""A faithful local fake of the Gemini REST API, with fault injection.

Google's network is not reachable from the tests, so the real ``google-genai`` client
talks to this server over HTTP instead. It follows the public REST API where the client
and ai-svc can tell the difference:

- paths ``/{v1|v1beta|v1alpha}/models/{model}:generateContent``,
  ``:streamGenerateContent`` (``?alt=sse`` for server-sent events, a JSON array
  otherwise) and ``:countTokens``; the API key in ``x-goog-api-key`` or ``?key=``;
- request JSON in camelCase or snake_case (proto3 JSON accepts both, and the SDK
  sends a mix), inline images in standard or url-safe base64;
- ``usageMetadata`` with prompt, candidates, thoughts and total token counts; images
  cost 258 tokens when both sides are at most 384 px, otherwise 258 tokens per
  768x768 tile; text costs about one token per four characters;
- thinking tokens come out of ``maxOutputTokens``: an answer that does not fit is cut
  and ends with ``finishReason: MAX_TOKENS``, as the real models do;
- with ``responseMimeType: application/json`` and a ``responseSchema`` (or
  ``responseJsonSchema``) the answer is deterministic JSON matching the schema,
  written in the language the prompt asks for (English, Korean or Japanese);
- errors shaped like Google's: ``{"error": {"code", "message", "status", "details"}}``
  with ``google.rpc.RetryInfo`` on 429.

Control (not part of Gemini): ``POST /_control`` with JSON ``{"latency": seconds,
"hold": bool, "faults": [...], "thinking_tokens": n, "stream_chunks": n,
"chunk_interval": seconds, "reset_stats": true}`` and ``GET /_stats`` (a streamed call
records a ``timeline`` of its chunks and ``client_closed_at``). ``"hold": true`` keeps
every model call thinking until ``"hold": false`` releases them all at once (the latency
still bounds the wait), so a test that needs calls in flight waits for its own steps, not
for a fixed latency.
Faults are served in order, one per model call, then normal answers resume. A fault is
a string (``"503"``, ``"429"``, ``"timeout"``, ``"reset"``, ``"blocked"``, ``"safety"``,
``"max_tokens"``, ``"invalid_json"``..., see ``FAULT_KINDS``), optionally ``"503@model"``
to hit one model only, or an object ``{"kind", "model", "retry_delay", "seconds",
"reason", "times"}``.

Run it: ``python -m testbed.fakes.gemini --host 127.0.0.1 --port 8090 --latency 2``. In
tests: ``with FakeGemini(latency=0.1) as fake: ...`` (a thread in this process) or
``FakeGeminiProcess`` (a subprocess, for load tests that must not share the GIL).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import io
import json
import math
import random
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from PIL import Image

from testbed.processes import free_port

ROOT = Path(__file__).resolve().parents[2]

IMAGE_TOKENS_PER_TILE = 258
SMALL_IMAGE_SIDE = 384
TILE_SIDE = 768
CHARS_PER_TOKEN = 4
DEFAULT_MAX_OUTPUT_TOKENS = 65536
MODEL_PATH = re.compile(
    r"^/(?P<version>v1|v1beta|v1alpha)/models/(?P<model>[A-Za-z0-9._-]+)"
    r":(?P<method>generateContent|streamGenerateContent|countTokens)$"
)
MODEL_INFO_PATH = re.compile(r"^/(?P<version>v1|v1beta|v1alpha)/models/(?P<model>[A-Za-z0-9._-]+)$")

HTTP_FAULTS: dict[str, tuple[int, str, str]] = {
    "400": (400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
    "403": (403, "PERMISSION_DENIED", "The caller does not have permission."),
    "404": (404, "NOT_FOUND", "Requested entity was not found."),
    "408": (408, "DEADLINE_EXCEEDED", "The request timed out."),
    "429": (
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
    "500": (500, "INTERNAL", "An internal error has occurred. Please retry."),
    "503": (503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
    "504": (504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}
CONTENT_FAULTS = {
    "blocked",
    "safety",
    "recitation",
    "prohibited",
    "max_tokens",
    "invalid_json",
    "wrong_schema",
    "empty",
}
# "cut": a stream reset by the network after half its chunks (a JSON answer: at once).
FAULT_KINDS = frozenset({*HTTP_FAULTS, "502", "timeout", "reset", "cut", *CONTENT_FAULTS})

WORDS: dict[str, dict[str, list[str]]] = {
    "en": {
        "title": [
            "Golden hour notes",
            "A quiet corner",
            "Colour study",
            "Small wonders",
            "The long view",
            "Weekend light",
            "Street stories",
            "Morning ritual",
        ],
        "sentence": [
            "The light wraps the scene softly.",
            "Small details tell a bigger story here.",
            "Take a moment to look around.",
            "Colour and shadow meet in balance.",
            "Share what this scene brings to mind.",
            "Everything slows down in a frame like this.",
        ],
        "tag": [
            "#photooftheday",
            "#everydaymoments",
            "#colour",
            "#lightandshadow",
            "#weekendvibes",
            "#slowliving",
            "#streetphotography",
            "#inspiration",
        ],
    },
    "ko": {
        "title": [
            "황금빛 시간의 기록",
            "조용한 구석",
            "색의 연구",
            "작은 경이로움",
            "멀리 바라보기",
            "주말의 빛",
            "거리의 이야기",
            "아침의 의식",
        ],
        "sentence": [
            "빛이 장면을 부드럽게 감싸고 있어요.",
            "작은 디테일이 큰 이야기를 들려줘요.",
            "잠시 멈춰서 주변을 둘러보세요.",
            "색과 그림자가 조화를 이루는 순간이에요.",
            "이 장면에서 떠오르는 생각을 나눠 보세요.",
            "이런 장면에서는 모든 것이 천천히 흘러가요.",
        ],
        "tag": [
            "#오늘의사진",
            "#일상",
            "#색감",
            "#빛과그림자",
            "#주말",
            "#감성",
            "#거리사진",
            "#영감",
        ],
    },
    "ja": {
        "title": [
            "ゴールデンアワーの記録",
            "静かな片隅",
            "色のスタディ",
            "小さな驚き",
            "遠くを眺めて",
            "週末の光",
            "街の物語",
            "朝の習慣",
        ],
        "sentence": [
            "光がやさしく景色を包んでいます。",
            "小さなディテールが大きな物語を語ります。",
            "少し立ち止まって周りを見渡してみましょう。",
            "色と影が調和するひとときです。",
            "この景色から浮かぶ思いをシェアしてみましょう。",
            "こんな一枚の中では時間がゆっくり流れます。",
        ],
        "tag": [
            "#今日の一枚",
            "#日常",
            "#色彩",
            "#光と影",
            "#週末",
            "#エモい",
            "#街角スナップ",
            "#インスピレーション",
        ],
    },
}


class RequestProblem(Exception):
    """A request the real API would refuse, with Google's status and message."""

    def __init__(self, code: int, status: str, message: str, details: list | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message
        self.details = details or []


@dataclass
class Fault:
    kind: str
    model: str | None = None
    retry_delay: str = "2s"
    seconds: float | None = None
    reason: str | None = None

    @classmethod
    def parse(cls, spec: Any) -> list[Fault]:
        if isinstance(spec, str | int):
            kind, _, model = str(spec).partition("@")
            spec = {"kind": kind, "model": model or None}
        if not isinstance(spec, dict) or str(spec.get("kind")) not in FAULT_KINDS:
            raise ValueError(f"unknown fault {spec!r}; known: {sorted(FAULT_KINDS)}")
        times = int(spec.get("times", 1))
        fault = cls(
            kind=str(spec["kind"]),
            model=spec.get("model"),
            retry_delay=str(spec.get("retry_delay", "2s")),
            seconds=None if spec.get("seconds") is None else float(spec["seconds"]),
            reason=spec.get("reason"),
        )
        return [fault] * times

    def describe(self) -> str:
        return self.kind if self.model is None else f"{self.kind}@{self.model}"


@dataclass
class FakeState:
    """Everything the control endpoint changes and the stats endpoint reports."""

    latency: float = 0.0
    thinking_tokens: int = 0
    hang_seconds: float = 30.0
    stream_chunks: int = 3
    chunk_interval: float = 0.0
    api_key: str | None = None
    faults: deque[Fault] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    calls: Counter = field(default_factory=Counter)
    by_model: Counter = field(default_factory=Counter)
    by_version: Counter = field(default_factory=Counter)
    outcomes: Counter = field(default_factory=Counter)
    bytes_received: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    requests: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=500))
    hold: threading.Event | None = None

    def configure(self, payload: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            if payload.get("reset_stats"):
                self._reset_stats()
            if "latency" in payload:
                self.latency = max(0.0, float(payload["latency"]))
            if "hold" in payload:
                if payload["hold"] and self.hold is None:
                    self.hold = threading.Event()
                elif not payload["hold"] and self.hold is not None:
                    self.hold.set()
                    self.hold = None
            if "thinking_tokens" in payload:
                self.thinking_tokens = max(0, int(payload["thinking_tokens"]))
            if "hang_seconds" in payload:
                self.hang_seconds = max(0.0, float(payload["hang_seconds"]))
            if "stream_chunks" in payload:
                self.stream_chunks = max(1, int(payload["stream_chunks"]))
            if "chunk_interval" in payload:
                self.chunk_interval = max(0.0, float(payload["chunk_interval"]))
            if "api_key" in payload:
                self.api_key = payload["api_key"] or None
            if "faults" in payload:
                faults: list[Fault] = []
                for spec in payload["faults"] or []:
                    faults.extend(Fault.parse(spec))
                self.faults = deque(faults)
            return self._settings()

    def _settings(self) -> dict[str, Any]:
        return {
            "latency": self.latency,
            "hold": self.hold is not None,
            "thinking_tokens": self.thinking_tokens,
            "hang_seconds": self.hang_seconds,
            "stream_chunks": self.stream_chunks,
            "chunk_interval": self.chunk_interval,
            "faults": [fault.describe() for fault in self.faults],
        }

    def _reset_stats(self) -> None:
        self.calls.clear()
        self.by_model.clear()
        self.by_version.clear()
        self.outcomes.clear()
        self.bytes_received = 0
        self.max_in_flight = self.in_flight
        self.requests.clear()

    def next_fault(self, model: str) -> Fault | None:
        with self.lock:
            for index, fault in enumerate(self.faults):
                if fault.model is None or fault.model == model:
                    del self.faults[index]
                    return fault
            return None

    def started(self, summary: dict[str, Any]) -> None:
        """Counted on arrival, so a call still hanging shows up in the stats."""
        with self.lock:
            self.calls[summary["method"]] += 1
            self.by_model[summary["model"]] += 1
            self.by_version[summary["api_version"]] += 1
            self.bytes_received += summary["bytes"]
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            summary["outcome"] = "in_flight"
            self.requests.append(summary)

    def finished(self, summary: dict[str, Any]) -> None:
        with self.lock:
            self.in_flight -= 1
            if summary.get("outcome") == "in_flight":
                summary["outcome"] = "ok"
            self.outcomes[summary["outcome"]] += 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "calls": sum(self.calls.values()),
                "by_method": dict(self.calls),
                "by_model": dict(self.by_model),
                "by_api_version": dict(self.by_version),
                "outcomes": dict(self.outcomes),
                "bytes_received": self.bytes_received,
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "requests": [dict(request) for request in self.requests],
                **self._settings(),
            }

    def pause(self, seconds: float) -> None:
        """Sleep, but wake up when the server stops so no thread outlives it by long."""
        if seconds > 0:
            self.stopping.wait(seconds)

    def think(self, seconds: float) -> None:
        """The model's latency, cut short when a hold this call waits under is released."""
        hold = self.hold
        if hold is None:
            self.pause(seconds)
            return
        deadline = time.monotonic() + seconds
        while not self.stopping.is_set() and (remaining := deadline - time.monotonic()) > 0:
            if hold.wait(min(remaining, 0.1)):
                return


def field_of(mapping: Any, camel: str, default: Any = None) -> Any:
    """A proto3 JSON field, which clients may spell in camelCase or snake_case."""
    if not isinstance(mapping, dict):
        return default
    if camel in mapping:
        return mapping[camel]
    snake = re.sub(r"(?<!^)([A-Z])", r"_\1", camel).lower()
    return mapping.get(snake, default)


def decode_base64(data: str, where: str) -> bytes:
    """Both alphabets, with or without padding, as the real API accepts."""
    cleaned = data.strip().replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        raise RequestProblem(
            400,
            "INVALID_ARGUMENT",
            f"Invalid value at '{where}' (TYPE_BYTES), Base64 decoding failed for \"{data[:20]}\"",
        ) from None


def image_tokens(width: int, height: int) -> int:
    """The documented rule: one 258-token unit when small, else one per 768x768 tile."""
    if width <= SMALL_IMAGE_SIDE and height <= SMALL_IMAGE_SIDE:
        return IMAGE_TOKENS_PER_TILE
    return math.ceil(width / TILE_SIDE) * math.ceil(height / TILE_SIDE) * IMAGE_TOKENS_PER_TILE


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


@dataclass
class ParsedPrompt:
    text: str
    text_tokens: int
    image_tokens: int
    images: list[dict[str, Any]]
    seed: int


def parse_contents(body: dict[str, Any]) -> ParsedPrompt:
    contents = field_of(body, "contents")
    if not isinstance(contents, list) or not contents:
        raise RequestProblem(
            400, "INVALID_ARGUMENT", "* GenerateContentRequest.contents: contents is not specified"
        )
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    digest = hashlib.sha256()
    system = field_of(body, "systemInstruction")
    for part in field_of(system, "parts", []) or []:
        if isinstance(field_of(part, "text"), str):
            texts.append(field_of(part, "text"))
    for content_index, content in enumerate(contents):
        parts = field_of(content, "parts")
        if not isinstance(parts, list) or not parts:
            raise RequestProblem(
                400,
                "INVALID_ARGUMENT",
                f"* GenerateContentRequest.contents[{content_index}].parts: contents.parts must "
                "not be empty.",
            )
        for part_index, part in enumerate(parts):
            text = field_of(part, "text")
            inline = field_of(part, "inlineData")
            if isinstance(text, str):
                texts.append(text)
                digest.update(text.encode())
            elif isinstance(inline, dict):
                where = f"contents[{content_index}].parts[{part_index}].inline_data.data"
                raw = decode_base64(str(field_of(inline, "data", "")), where)
                digest.update(raw)
                images.append(measure_image(raw, str(field_of(inline, "mimeType", ""))))
    text = "\n".join(texts)
    return ParsedPrompt(
        text=text,
        text_tokens=sum(text_tokens(item) for item in texts),
        image_tokens=sum(image["tokens"] for image in images),
        images=images,
        seed=int.from_bytes(digest.digest()[:4], "big"),
    )


def measure_image(raw: bytes, mime_type: str) -> dict[str, Any]:
    if not mime_type.startswith("image/"):
        raise RequestProblem(400, "INVALID_ARGUMENT", f"Unsupported MIME type: {mime_type}")
    try:
        with Image.open(io.BytesIO(raw)) as image:
            width, height = image.size
    except Exception:
        raise RequestProblem(
            400, "INVALID_ARGUMENT", "Unable to process input image. Please retry."
        ) from None
    return {
        "mime_type": mime_type,
        "bytes": len(raw),
        "width": width,
        "height": height,
        "tokens": image_tokens(width, height),
    }


def prompt_language(text: str) -> str:
    lowered = text.lower()
    if "korean" in lowered or "한국어" in text:
        return "ko"
    if "japanese" in lowered or "日本語" in text:
        return "ja"
    return "en"


def as_int(value: Any, default: int | None = None) -> int | None:
    """int64 fields arrive as JSON numbers or strings."""
    if value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def first_option(schema: Any) -> dict[str, Any]:
    """The first branch of anyOf/oneOf/allOf, which is what the fake answers with."""
    if not isinstance(schema, dict):
        return {}
    for combinator in ("anyOf", "oneOf", "allOf"):
        options = field_of(schema, combinator)
        if isinstance(options, list) and options:
            return first_option(options[0])
    return schema


def schema_type(schema: dict[str, Any]) -> str:
    """OpenAPI-subset types are upper case (OBJECT), JSON Schema's lower case (object)."""
    kind = field_of(schema, "type", "")
    if isinstance(kind, list):
        kind = next((item for item in kind if str(item).lower() != "null"), "string")
    if not kind:
        return "OBJECT" if field_of(schema, "properties") else "STRING"
    return str(kind).upper()


class SchemaAnswer:
    """Deterministic JSON that matches an OpenAPI-subset or JSON Schema."""

    def __init__(self, language: str, seed: int) -> None:
        self.words = WORDS[language]
        self.seed = seed
        self.counter = 0

    def pick(self, kind: str) -> str:
        choices = self.words[kind]
        self.counter += 1
        return choices[random.Random(self.seed * 7919 + self.counter).randrange(len(choices))]

    def build(self, schema: Any, name: str = "") -> Any:
        schema = first_option(schema)
        enum = field_of(schema, "enum")
        if isinstance(enum, list) and enum:
            self.counter += 1
            return enum[(self.seed + self.counter) % len(enum)]
        builders = {
            "OBJECT": self.build_object,
            "ARRAY": self.build_array,
            "INTEGER": self.build_number,
            "NUMBER": self.build_number,
            "BOOLEAN": lambda _schema, _name: True,
        }
        return builders.get(schema_type(schema), self.string_for)(schema, name)

    def build_object(self, schema: dict[str, Any], _name: str) -> dict[str, Any]:
        properties = field_of(schema, "properties", {}) or {}
        order = field_of(schema, "propertyOrdering") or list(properties)
        return {key: self.build(properties[key], key) for key in order if key in properties}

    def build_array(self, schema: dict[str, Any], name: str) -> list[Any]:
        low = as_int(field_of(schema, "minItems"), 0) or 0
        high = as_int(field_of(schema, "maxItems"), 1_000) or 0
        return [self.build(field_of(schema, "items"), name) for _ in range(min(max(3, low), high))]

    def build_number(self, schema: dict[str, Any], _name: str) -> float:
        self.counter += 1
        return self.counter if schema_type(schema) == "INTEGER" else self.counter / 2

    def string_for(self, schema: dict[str, Any], name: str) -> str:
        lowered = name.lower()
        if "tag" in lowered:
            value = self.pick("tag")
        elif lowered in {"title", "name", "headline", "topic"}:
            value = self.pick("title")
        else:
            value = f"{self.pick('sentence')} {self.pick('sentence')}"
        limit = as_int(field_of(schema, "maxLength"))
        return value[:limit] if limit else value


def plain_answer(language: str, seed: int) -> str:
    answer = SchemaAnswer(language, seed)
    return f"{answer.pick('title')}. {answer.pick('sentence')} {answer.pick('sentence')}"


def google_error(
    code: int, status: str, message: str, details: list | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return {"error": error}


class FakeGeminiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], state: FakeState) -> None:
        self.state = state
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, GeminiHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Drop kept-alive client connections too, as a dead server would."""
        with self.connections_lock:
            open_sockets = list(self.connections)
            self.connections.clear()
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class GeminiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes; with Nagle on, the body waits for the client's
    # delayed ACK on a kept-alive connection, about 40 ms a call that Google's frontends
    # do not add (and that every benchmark through this fake would count as ai-svc's).
    disable_nagle_algorithm = True
    server_version = "FakeGemini/1.0"
    sys_version = ""
    timeout = 60
    server: FakeGeminiServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read /_stats, not an access log."""

    @property
    def state(self) -> FakeState:
        return self.server.state

    # ----------------------------------------------------------------- plumbing

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def send_problem(self, problem: RequestProblem) -> None:
        self.send_json(
            problem.code,
            google_error(problem.code, problem.status, problem.message, problem.details),
        )

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def reset_connection(self) -> None:
        """Abort with a TCP RST, like a load balancer dropping the connection."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

    # ------------------------------------------------------------------ routing

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/_stats":
            self.send_json(200, self.state.snapshot())
            return
        if url.path == "/healthz":
            self.send_json(200, {"status": "ok"})
            return
        info = MODEL_INFO_PATH.match(url.path)
        if info:
            model = info["model"]
            self.send_json(
                200,
                {
                    "name": f"models/{model}",
                    "version": "001",
                    "displayName": model,
                    "inputTokenLimit": 1048576,
                    "outputTokenLimit": DEFAULT_MAX_OUTPUT_TOKENS,
                    "supportedGenerationMethods": ["generateContent", "countTokens"],
                    "thinking": True,
                },
            )
            return
        self.send_problem(RequestProblem(404, "NOT_FOUND", "Requested entity was not found."))

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        body = self.read_body()
        if url.path == "/_control":
            try:
                payload = json.loads(body or b"{}")
                self.send_json(200, self.state.configure(payload))
            except (ValueError, TypeError) as error:
                self.send_json(400, {"error": str(error)})
            return
        match = MODEL_PATH.match(url.path)
        if match is None:
            self.send_problem(RequestProblem(404, "NOT_FOUND", "Requested entity was not found."))
            return
        query = parse_qs(url.query)
        model, method, version = match["model"], match["method"], match["version"]
        summary: dict[str, Any] = {
            "method": method,
            "model": model,
            "api_version": version,
            "bytes": len(body),
            "sse": query.get("alt") == ["sse"],
        }
        self.state.started(summary)
        try:
            self.model_call(method, model, body, query, summary)
        except RequestProblem as problem:
            summary["outcome"] = f"error_{problem.code}"
            self.send_problem(problem)
        except Exception as error:  # a bug in the fake shows as Google's 500, not a hang
            summary["outcome"] = "error_500"
            summary["bug"] = repr(error)
            self.send_problem(RequestProblem(500, "INTERNAL", f"fake Gemini failed: {error!r}"))
        finally:
            self.state.finished(summary)

    # --------------------------------------------------------------- the model

    def check_key(self, query: dict[str, list[str]]) -> None:
        key = self.headers.get("x-goog-api-key") or (query.get("key") or [None])[0]
        if not key:
            raise RequestProblem(
                403,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API.",
            )
        if self.state.api_key is not None and key != self.state.api_key:
            raise RequestProblem(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                    }
                ],
            )

    def model_call(
        self,
        method: str,
        model: str,
        raw: bytes,
        query: dict[str, list[str]],
        summary: dict[str, Any],
    ) -> None:
        self.check_key(query)
        if not model.startswith(("gemini", "gemma", "learnlm")):
            raise RequestProblem(
                404,
                "NOT_FOUND",
                f"models/{model} is not found for API version {summary['api_version']}, or is "
                f"not supported for {method}.",
            )
        try:
            body = json.loads(raw)
        except ValueError:
            raise RequestProblem(
                400, "INVALID_ARGUMENT", "Invalid JSON payload received."
            ) from None
        if not isinstance(body, dict):
            raise RequestProblem(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        if method == "countTokens":
            request = field_of(body, "generateContentRequest") or body
            prompt = parse_contents(request)
            summary.update(outcome="ok", prompt_tokens=prompt.text_tokens + prompt.image_tokens)
            self.send_json(200, {"totalTokens": summary["prompt_tokens"]})
            return
        prompt = parse_contents(body)
        config = field_of(body, "generationConfig", {}) or {}
        thinking = field_of(config, "thinkingConfig", {}) or {}
        summary.update(
            images=prompt.images,
            prompt_tokens=prompt.text_tokens + prompt.image_tokens,
            image_tokens=prompt.image_tokens,
            max_output_tokens=as_int(field_of(config, "maxOutputTokens")),
            thinking_budget=as_int(field_of(thinking, "thinkingBudget")),
            response_mime_type=field_of(config, "responseMimeType"),
            has_schema=bool(
                field_of(config, "responseSchema") or field_of(config, "responseJsonSchema")
            ),
            prompt_text=prompt.text[:2000],
        )
        fault = self.state.next_fault(model)
        summary["fault"] = fault.describe() if fault else None
        if fault is not None and self.serve_transport_fault(fault, model, summary):
            return
        self.state.think(self.state.latency if fault is None or fault.seconds is None else 0)
        responses = self.generate(model, prompt, config, fault, summary)
        if fault is not None and fault.kind == "cut" and not summary["sse"]:
            summary["outcome"] = "cut"
            self.reset_connection()
            return
        if method == "generateContent":
            self.send_json(200, responses[-1] if len(responses) == 1 else merge(responses))
        elif summary["sse"]:
            self.send_sse(responses, summary)
        else:
            self.send_json(200, responses)

    def serve_transport_fault(self, fault: Fault, model: str, summary: dict[str, Any]) -> bool:
        """HTTP errors, hangs and resets: answered before any model output."""
        if fault.seconds is not None and fault.kind != "timeout":
            self.state.pause(fault.seconds)
        if fault.kind in HTTP_FAULTS:
            code, status, message = HTTP_FAULTS[fault.kind]
            details: list[dict[str, Any]] = []
            if code == 429:
                details = [
                    {
                        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                        "violations": [
                            {
                                "quotaMetric": "generativelanguage.googleapis.com/"
                                "generate_content_requests",
                                "quotaId": "GenerateRequestsPerMinutePerProjectPerModel",
                                "quotaDimensions": {"location": "global", "model": model},
                                "quotaValue": "1000",
                            }
                        ],
                    },
                    {
                        "@type": "type.googleapis.com/google.rpc.RetryInfo",
                        "retryDelay": fault.retry_delay,
                    },
                ]
            summary["outcome"] = f"error_{code}"
            self.send_json(code, google_error(code, status, message, details))
            return True
        if fault.kind == "502":
            page = b"<html><head><title>502 Bad Gateway</title></head><body>502</body></html>"
            self.send_response(502)
            self.send_header("Content-Type", "text/html; charset=UTF-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            summary["outcome"] = "error_502"
            return True
        if fault.kind == "timeout":
            summary["outcome"] = "timeout"
            self.state.pause(
                fault.seconds if fault.seconds is not None else self.state.hang_seconds
            )
            self.reset_connection()
            return True
        if fault.kind == "reset":
            summary["outcome"] = "reset"
            self.reset_connection()
            return True
        return False

    def generate(
        self,
        model: str,
        prompt: ParsedPrompt,
        config: dict[str, Any],
        fault: Fault | None,
        summary: dict[str, Any],
    ) -> list[dict[str, Any]]:
        """The model's answer as stream chunks (one chunk unless streaming splits it)."""
        language = prompt_language(prompt.text)
        json_mode = field_of(config, "responseMimeType") == "application/json"
        schema = field_of(config, "responseSchema") or field_of(config, "responseJsonSchema")
        if json_mode and schema:
            text = json.dumps(SchemaAnswer(language, prompt.seed).build(schema), ensure_ascii=False)
        elif json_mode:
            text = json.dumps({"text": plain_answer(language, prompt.seed)}, ensure_ascii=False)
        else:
            text = plain_answer(language, prompt.seed)
        budget = as_int(field_of(field_of(config, "thinkingConfig", {}), "thinkingBudget"))
        thoughts = (
            self.state.thinking_tokens
            if budget in (None, -1)
            else min(budget, self.state.thinking_tokens)
        )
        max_output = as_int(field_of(config, "maxOutputTokens"), DEFAULT_MAX_OUTPUT_TOKENS) or 1
        usage = {
            "promptTokenCount": prompt.text_tokens + prompt.image_tokens,
            "promptTokensDetails": [
                {"modality": "TEXT", "tokenCount": prompt.text_tokens},
                *(
                    [{"modality": "IMAGE", "tokenCount": prompt.image_tokens}]
                    if prompt.images
                    else []
                ),
            ],
        }
        response_id = hashlib.sha256(f"{prompt.seed}{time.time_ns()}".encode()).hexdigest()[:22]
        base = {"modelVersion": model, "responseId": response_id}
        kind = fault.kind if fault else None
        if kind == "blocked":
            summary["outcome"] = "blocked"
            return [
                {
                    "promptFeedback": {
                        "blockReason": fault.reason or "SAFETY",
                        "safetyRatings": safety_ratings(blocked=True),
                    },
                    "usageMetadata": {**usage, "totalTokenCount": usage["promptTokenCount"]},
                    **base,
                }
            ]
        finish = "STOP"
        if kind in {"safety", "recitation", "prohibited"}:
            finish = {"safety": "SAFETY", "recitation": "RECITATION"}.get(
                kind, "PROHIBITED_CONTENT"
            )
            text = ""
        elif kind == "invalid_json":
            text = "Here are your ideas: {" + text[: len(text) // 3]
        elif kind == "wrong_schema":
            text = json.dumps({"suggestions": [{"name": "Untitled"}]})
        elif kind == "empty":
            text = ""
        elif kind == "max_tokens":
            max_output = min(max_output, thoughts + max(1, text_tokens(text) // 2))
        answer_tokens = text_tokens(text)
        if thoughts + answer_tokens > max_output:
            allowed = max(0, max_output - thoughts)
            text = text[: allowed * CHARS_PER_TOKEN]
            thoughts = min(thoughts, max_output)
            answer_tokens = text_tokens(text)
            finish = "MAX_TOKENS"
        summary["outcome"] = finish.lower() if kind is None else kind
        usage.update(
            candidatesTokenCount=answer_tokens,
            thoughtsTokenCount=thoughts,
            totalTokenCount=usage["promptTokenCount"] + answer_tokens + thoughts,
        )
        if not thoughts:
            del usage["thoughtsTokenCount"]
        summary.update(output_tokens=answer_tokens, thinking_tokens=thoughts, finish_reason=finish)
        pieces = split_text(text, self.state.stream_chunks) if text else [""]
        chunks = []
        written = ""
        for number, piece in enumerate(pieces):
            last = number == len(pieces) - 1
            content: dict[str, Any] = {"role": "model"}
            if piece:
                content["parts"] = [{"text": piece}]
            candidate: dict[str, Any] = {"content": content, "index": 0}
            if last:
                candidate["finishReason"] = finish
                candidate["safetyRatings"] = safety_ratings(blocked=finish == "SAFETY")
            # As the real API does, each chunk's usage counts the answer so far.
            written += piece
            so_far = dict(usage)
            so_far["candidatesTokenCount"] = text_tokens(written) if not last else answer_tokens
            so_far["totalTokenCount"] = (
                usage["promptTokenCount"] + so_far["candidatesTokenCount"] + thoughts
            )
            chunks.append({"candidates": [candidate], "usageMetadata": so_far, **base})
        return chunks

    def send_sse(self, responses: list[dict[str, Any]], summary: dict[str, Any]) -> None:
        """The chunks ``chunk_interval`` apart, as a model writes; stops when the client leaves.

        ``summary["timeline"]`` records when each chunk went out (``time.time()``) and the
        answer tokens written by then; a client that closes the connection is noticed
        while waiting for the next chunk (``client_closed_at``) and nothing more is
        written (or billed): the real API stops generating too.
        """
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.flush()
        timeline: list[dict[str, Any]] = []
        summary.update(chunks_planned=len(responses), timeline=timeline, client_closed_at=None)
        cut_after = (
            max(1, len(responses) // 2) if str(summary.get("fault")).startswith("cut") else None
        )
        for number, response in enumerate(responses):
            if number == cut_after:
                summary["outcome"] = "cut"
                self.reset_connection()
                return
            if number and self.wait_for_next_chunk(self.state.chunk_interval):
                summary["client_closed_at"] = time.time()
                summary["outcome"] = "client_closed"
                self.close_connection = True
                return
            event = f"data: {json.dumps(response, ensure_ascii=False)}\r\n\r\n".encode()
            try:
                self.wfile.write(f"{len(event):X}\r\n".encode() + event + b"\r\n")
                self.wfile.flush()
            except OSError:
                summary["client_closed_at"] = time.time()
                summary["outcome"] = "client_closed"
                self.close_connection = True
                return
            usage = response.get("usageMetadata", {})
            timeline.append(
                {
                    "chunk": number,
                    "sent_at": time.time(),
                    "output_tokens": usage.get("candidatesTokenCount", 0),
                }
            )
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def wait_for_next_chunk(self, seconds: float) -> bool:
        """Sleep until the next chunk is due; True if the client closed meanwhile."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0 or self.state.stopping.is_set():
                return self.peer_closed()
            with contextlib.suppress(OSError, ValueError):
                readable, _, _ = select.select([self.connection], [], [], min(left, 0.05))
                if readable and self.peer_closed():
                    return True

    def peer_closed(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True


def split_text(text: str, pieces: int = 3) -> list[str]:
    size = max(1, math.ceil(len(text) / pieces))
    return [text[start : start + size] for start in range(0, len(text), size)]


def merge(responses: list[dict[str, Any]]) -> dict[str, Any]:
    """One non-streamed answer from the stream chunks."""
    last = json.loads(json.dumps(responses[-1]))
    text = "".join(
        part.get("text", "")
        for response in responses
        for candidate in response.get("candidates", [])
        for part in candidate.get("content", {}).get("parts", [])
    )
    if last.get("candidates"):
        content = last["candidates"][0].setdefault("content", {"role": "model"})
        if text:
            content["parts"] = [{"text": text}]
    return last


def safety_ratings(*, blocked: bool) -> list[dict[str, Any]]:
    ratings = [
        {"category": category, "probability": "NEGLIGIBLE"}
        for category in (
            "HARM_CATEGORY_HATE_SPEECH",
            "HARM_CATEGORY_DANGEROUS_CONTENT",
            "HARM_CATEGORY_HARASSMENT",
            "HARM_CATEGORY_SEXUALLY_EXPLICIT",
        )
    ]
    if blocked:
        ratings[1] = {
            "category": "HARM_CATEGORY_DANGEROUS_CONTENT",
            "probability": "HIGH",
            "blocked": True,
        }
    return ratings


class FakeGemini:
    """The fake in a background thread of this process, on a free loopback port."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency: float = 0.0,
        thinking_tokens: int = 0,
        api_key: str | None = None,
    ) -> None:
        self.state = FakeState(latency=latency, thinking_tokens=thinking_tokens, api_key=api_key)
        self.server = FakeGeminiServer((host, port), self.state)
        self.thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.server.server_address[0]}:{self.port}"

    def start(self) -> FakeGemini:
        self.thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-gemini",
            daemon=True,
        )
        self.thread.start()
        return self

    def stop(self) -> None:
        self.state.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.server.close_connections()
        if self.thread is not None:
            self.thread.join(5)

    def control(self, **settings: Any) -> dict[str, Any]:
        return self.state.configure(settings)

    def stats(self) -> dict[str, Any]:
        return self.state.snapshot()

    def __enter__(self) -> FakeGemini:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


class FakeGeminiProcess:
    """The fake as ``python -m testbed.fakes.gemini`` in its own process (own GIL)."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        port: int | None = None,
        log_path: Path | None = None,
        python: str = sys.executable,
    ) -> None:
        self.latency = latency
        self.port = port or free_port()
        self.log_path = log_path
        self.python = python
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> FakeGeminiProcess:
        output = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [
                self.python,
                "-m",
                "testbed.fakes.gemini",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--latency",
                str(self.latency),
            ],
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"fake Gemini exited with {self.process.returncode}")
            with contextlib.suppress(requests.RequestException):
                requests.get(f"{self.url}/_stats", timeout=1)
                return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError("fake Gemini did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def control(self, **settings: Any) -> dict[str, Any]:
        response = requests.post(f"{self.url}/_control", json=settings, timeout=5)
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        return requests.get(f"{self.url}/_stats", timeout=5).json()

    def __enter__(self) -> FakeGeminiProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A local fake of the Gemini REST API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--thinking-tokens", type=int, default=0)
    parser.add_argument("--api-key", default=None, help="accept only this key (default: any)")
    args = parser.parse_args(argv)
    fake = FakeGemini(
        args.host,
        args.port,
        latency=args.latency,
        thinking_tokens=args.thinking_tokens,
        api_key=args.api_key,
    )
    print(f"fake Gemini on {fake.url} (latency {args.latency}s)", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    fake.start()
    stop.wait()
    fake.stop()


if __name__ == "__main__":
    main()
