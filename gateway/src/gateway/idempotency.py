"""``Idempotency-Key`` on POSTs: a retry returns the first answer instead of doing it twice.

A phone on a flaky network often sends a snap, loses the answer, and sends it again. With
the same ``Idempotency-Key`` the second request gets the stored first answer (with
``Idempotency-Replayed: true``) and nothing is stored or paid for twice.

- Scope: client identity + route + key, so two clients never share an answer.
- While the first request runs, a duplicate gets 409 ``idempotency_in_progress`` with
  ``Retry-After`` (the first one has not answered yet; waiting in a worker thread would
  tie up the gateway).
- The same key with a different body gets 422 ``idempotency_key_reused``. The body is
  hashed while it streams through (nothing is buffered); for multipart bodies the random
  boundary is left out of the hash, since an app that rebuilds its form for a retry
  gets a new one.
- Answers below 500 (except 408, 409 and 429) are kept for ``IDEMPOTENCY_TTL_SECONDS``;
  a 5xx or a crash frees the key so the retry runs again.
- Store: Redis when ``REDIS_URL`` is set (shared by replicas), else the machine's SQLite
  file that every worker shares (:mod:`gateway.local_store`). If
  Redis is unreachable the request runs without the protection, with a warning: refusing
  service would be worse than the rare double.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import BinaryIO, Literal, Protocol

import redis
import structlog
from flask import Response, g, request

from chassis import redis_client
from chassis.errors import ApiError
from gateway.metrics import IDEMPOTENT_REPLAYS

log = structlog.get_logger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotency-Replayed"
VALID_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
NOT_KEPT = frozenset({408, 409, 425, 429})
REPLAYED_HEADERS = frozenset({"content-type", "location", "etag", "cache-control"})
CHUNK = 64 * 1024


@dataclass
class Entry:
    state: Literal["running", "done"]
    owner: str
    fingerprint: str | None = None
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str = ""  # base64

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str | bytes) -> Entry:
        data = json.loads(raw)
        data["headers"] = [tuple(pair) for pair in data.get("headers", [])]
        return cls(**data)


class StoreUnavailable(Exception):
    pass


class IdempotencyStore(Protocol):
    def claim(self, key: str, entry: Entry, ttl: int) -> Entry | None:
        """Store ``entry`` if the key is free (None), else return what is there."""

    def peek(self, key: str) -> Entry | None: ...

    def complete(self, key: str, entry: Entry, ttl: int) -> None: ...

    def release(self, key: str, owner: str) -> None: ...

    def forget(self, prefix: str) -> int:
        """Delete every entry whose key starts with ``prefix``."""


class MemoryStore:
    """One worker's memory: enough for a single replica; bounded, oldest entries go first."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[str, tuple[float, Entry]] = OrderedDict()
        self._lock = threading.Lock()

    def _live(self, key: str, now: float) -> Entry | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] <= now:
            del self._items[key]
            return None
        return item[1]

    def claim(self, key: str, entry: Entry, ttl: int) -> Entry | None:
        now = time.monotonic()
        with self._lock:
            existing = self._live(key, now)
            if existing is not None:
                return existing
            self._items[key] = (now + ttl, entry)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
            return None

    def peek(self, key: str) -> Entry | None:
        with self._lock:
            return self._live(key, time.monotonic())

    def complete(self, key: str, entry: Entry, ttl: int) -> None:
        now = time.monotonic()
        with self._lock:
            existing = self._live(key, now)
            if existing is not None and existing.owner == entry.owner:
                self._items[key] = (now + ttl, entry)

    def release(self, key: str, owner: str) -> None:
        with self._lock:
            item = self._items.get(key)
            if item is not None and item[1].owner == owner:
                del self._items[key]

    def forget(self, prefix: str) -> int:
        with self._lock:
            doomed = [key for key in self._items if key.startswith(prefix)]
            for key in doomed:
                del self._items[key]
        return len(doomed)


# Replace or delete only the entry this request claimed: a key that expired meanwhile and
# was claimed by another request is not ours to touch.
_COMPLETE = """
local current = redis.call('GET', KEYS[1])
if current and string.find(current, ARGV[1], 1, true) then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""
_RELEASE = """
local current = redis.call('GET', KEYS[1])
if current and string.find(current, ARGV[1], 1, true) then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisStore:
    PREFIX = "gateway:idempotency:"

    def __init__(self, url: str, timeout_seconds: float) -> None:
        self.client = redis_client.connect(url, timeout_seconds)
        self._complete = self.client.register_script(_COMPLETE)
        self._release = self.client.register_script(_RELEASE)

    def claim(self, key: str, entry: Entry, ttl: int) -> Entry | None:
        try:
            for _ in range(2):
                if self.client.set(self.PREFIX + key, entry.dumps(), nx=True, px=ttl * 1000):
                    return None
                raw = self.client.get(self.PREFIX + key)
                if raw is not None:
                    return Entry.loads(raw)
        except (redis.RedisError, OSError) as error:
            raise StoreUnavailable(str(error)) from error
        raise StoreUnavailable("the key changed hands twice while being claimed")

    def peek(self, key: str) -> Entry | None:
        try:
            raw = self.client.get(self.PREFIX + key)
        except (redis.RedisError, OSError) as error:
            raise StoreUnavailable(str(error)) from error
        return None if raw is None else Entry.loads(raw)

    def complete(self, key: str, entry: Entry, ttl: int) -> None:
        try:
            self._complete(
                keys=[self.PREFIX + key], args=[f'"{entry.owner}"', entry.dumps(), ttl * 1000]
            )
        except (redis.RedisError, OSError) as error:
            raise StoreUnavailable(str(error)) from error

    def release(self, key: str, owner: str) -> None:
        try:
            self._release(keys=[self.PREFIX + key], args=[f'"{owner}"'])
        except (redis.RedisError, OSError) as error:
            raise StoreUnavailable(str(error)) from error

    def forget(self, prefix: str) -> int:
        try:
            doomed = list(self.client.scan_iter(match=f"{self.PREFIX}{prefix}*", count=500))
            return int(self.client.delete(*doomed)) if doomed else 0
        except (redis.RedisError, OSError) as error:
            raise StoreUnavailable(str(error)) from error


class DigestingInput:
    """The WSGI input, hashed as it is read; a multipart boundary is left out of the hash.

    The boundary is removed by a left-to-right scan that carries the last few bytes over
    to the next read, so the digest does not depend on how the body was chunked.
    """

    def __init__(self, stream: BinaryIO, drop: bytes | None) -> None:
        self._stream = stream
        self._hash = hashlib.sha256()
        self._drop = drop or b""
        self._tail = b""

    def _feed(self, data: bytes) -> None:
        if not self._drop:
            self._hash.update(data)
            return
        buffer = self._tail + data
        kept: list[bytes] = []
        position = 0
        while (found := buffer.find(self._drop, position)) >= 0:
            kept.append(buffer[position:found])
            position = found + len(self._drop)
        carry_from = max(position, len(buffer) - (len(self._drop) - 1))
        kept.append(buffer[position:carry_from])
        self._tail = buffer[carry_from:]
        self._hash.update(b"".join(kept))

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size) if size is not None and size >= 0 else self._stream.read()
        self._feed(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        data = self._stream.readline(size)
        self._feed(data)
        return data

    def hexdigest(self) -> str:
        final = self._hash.copy()
        final.update(self._tail)
        return final.hexdigest()


def client_prefix(bucket: str) -> str:
    return hashlib.sha256(bucket.encode("utf-8", "surrogateescape")).hexdigest()[:32] + ":"


def digest_body() -> DigestingInput:
    if "stream" in request.__dict__:
        raise RuntimeError("the request body was opened before it could be hashed")
    boundary = (
        request.mimetype_params.get("boundary")
        if request.mimetype.startswith("multipart/")
        else None
    )
    digesting = DigestingInput(
        request.environ["wsgi.input"], boundary.encode() if boundary else None
    )
    request.environ["wsgi.input"] = digesting
    return digesting


def drain_body() -> None:
    stream = request.stream
    while stream.read(CHUNK):
        pass


def keepable(response: Response, max_body: int) -> bool:
    return (
        response.status_code < 500
        and response.status_code not in NOT_KEPT
        and not response.is_streamed
        and (response.content_length or 0) <= max_body
    )


def replay(entry: Entry) -> Response:
    response = Response(base64.b64decode(entry.body), status=entry.status)
    for name, value in entry.headers:
        response.headers[name] = value
    response.headers[REPLAYED_HEADER] = "true"
    return response


class Idempotency:
    def __init__(
        self,
        store: IdempotencyStore,
        *,
        ttl: int,
        lock_seconds: int,
        max_body: int,
        client_bucket: Callable[[], str],
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.lock_seconds = lock_seconds
        self.max_body = max_body
        self.client_bucket = client_bucket

    def scope(self, key: str) -> str:
        """``<client digest>:<request digest>``: one client's entries can be found (and erased)."""
        bucket = self.client_bucket()
        rule = request.url_rule.rule if request.url_rule else request.path
        material = f"{bucket}\n{request.method} {rule}\n{key}"
        digest = hashlib.sha256(material.encode("utf-8", "surrogateescape")).hexdigest()
        return f"{client_prefix(bucket)}{digest}"

    def forget(self, bucket: str) -> None:
        """Drop every stored answer of one client (``user:<uid>``), for account deletion."""
        self.store.forget(client_prefix(bucket))

    def answer_waiting(self) -> bool:
        """Whether this request would be answered from the store (so it costs no quota).

        Asked by the rate limiter before the view runs; a wrong guess only affects the
        quota check of this one request (the replay still compares the body).
        """
        key = request.headers.get(HEADER)
        if key is None or not VALID_KEY.match(key):
            return False
        cached = g.get("idempotency_answer_waiting")
        if cached is None:
            try:
                entry = self.store.peek(self.scope(key))
            except StoreUnavailable:
                entry = None
            cached = entry is not None and entry.state == "done"
            g.idempotency_answer_waiting = cached
        return cached

    def run(
        self,
        handler: Callable[[], Response],
        replay_as: Callable[[Response], Response] | None = None,
    ) -> Response:
        """``replay_as`` retells a stored answer (as an event stream, for one)."""
        key = request.headers.get(HEADER)
        if key is None:
            return handler()
        if not VALID_KEY.match(key):
            raise ApiError(
                400,
                "invalid_idempotency_key",
                f"{HEADER} must be 1 to 255 visible ASCII characters (a UUID is ideal).",
            )
        body = digest_body()
        scope = self.scope(key)
        claim = Entry(state="running", owner=secrets.token_hex(12))
        try:
            existing = self.store.claim(scope, claim, self.lock_seconds)
        except StoreUnavailable as error:
            log.warning("idempotency_store_unavailable", error=str(error))
            return handler()
        if existing is None:
            return self._first(handler, scope, claim, body)
        if existing.state == "running":
            raise ApiError(
                409,
                "idempotency_in_progress",
                f"A request with this {HEADER} is still running; retry shortly.",
                headers={"Retry-After": "1"},
            )
        drain_body()
        if body.hexdigest() != existing.fingerprint:
            raise ApiError(
                422,
                "idempotency_key_reused",
                f"This {HEADER} was used for a different request body.",
            )
        g.idempotent_replay = True
        IDEMPOTENT_REPLAYS.inc()
        stored = replay(existing)
        return replay_as(stored) if replay_as is not None else stored

    def _first(
        self, handler: Callable[[], Response], scope: str, claim: Entry, body: DigestingInput
    ) -> Response:
        try:
            response = handler()
            drain_body()
        except BaseException:
            self._release(scope, claim.owner)
            raise
        defer = getattr(response, "defer_final_answer", None)
        if callable(defer):
            # A stream: its final answer is kept (or the key freed) when it ends.
            fingerprint = body.hexdigest()
            defer(
                lambda final: self._keep(scope, claim, fingerprint, final),
                lambda: self._release(scope, claim.owner),
            )
            return response
        self._keep(scope, claim, body.hexdigest(), response)
        return response

    def _keep(self, scope: str, claim: Entry, fingerprint: str, response: Response) -> None:
        if not keepable(response, self.max_body):
            self._release(scope, claim.owner)
            return
        done = Entry(
            state="done",
            owner=claim.owner,
            fingerprint=fingerprint,
            status=response.status_code,
            headers=[
                (name, value)
                for name, value in response.headers.items()
                if name.lower() in REPLAYED_HEADERS
            ],
            body=base64.b64encode(response.get_data()).decode("ascii"),
        )
        try:
            self.store.complete(scope, done, self.ttl)
        except StoreUnavailable as error:
            log.warning("idempotency_store_unavailable", error=str(error))

    def _release(self, scope: str, owner: str) -> None:
        try:
            self.store.release(scope, owner)
        except StoreUnavailable as error:
            log.warning("idempotency_store_unavailable", error=str(error))


def build_idempotency(
    redis_url: str | None,
    timeout_seconds: float,
    *,
    ttl: int,
    lock_seconds: int,
    max_entries: int,
    max_body: int,
    client_bucket: Callable[[], str],
    local: IdempotencyStore | None = None,
) -> Idempotency:
    """Redis when ``redis_url`` is set; else ``local`` (the machine's shared store) or memory."""
    store: IdempotencyStore = (
        RedisStore(redis_url, timeout_seconds)
        if redis_url
        else local
        if local is not None
        else MemoryStore(max_entries)
    )
    return Idempotency(
        store, ttl=ttl, lock_seconds=lock_seconds, max_body=max_body, client_bucket=client_bucket
    )
