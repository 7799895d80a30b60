"""Timing every storage call, whatever the backend.

The wrapper has the backend's interface and records
``storage_operation_duration_seconds{backend, operation, outcome}``. A missing object is
an answer (``ok``); only a failure of the storage itself is an ``error``. A ``get`` is
timed to the moment its body is ready to stream, not to the last byte sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import IO, TypeVar

from upload_svc.metrics import STORAGE_DURATION
from upload_svc.storage.base import (
    ListedObject,
    ObjectInfo,
    ObjectNotFound,
    Storage,
    StoredObject,
)

T = TypeVar("T")


class InstrumentedStorage:
    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.backend = inner.backend

    @contextmanager
    def _timed(self, operation: str) -> Iterator[None]:
        started = time.perf_counter()
        outcome = "error"
        try:
            yield
            outcome = "ok"
        except (ObjectNotFound, ValueError):
            outcome = "ok"
            raise
        finally:
            STORAGE_DURATION.labels(self.backend, operation, outcome).observe(
                time.perf_counter() - started
            )

    def _call(self, operation: str, call: Callable[[], T]) -> T:
        with self._timed(operation):
            return call()

    def put(
        self,
        key: str,
        source: IO[bytes],
        *,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
        cache_control: str | None = None,
        cache: bool = False,
    ) -> None:
        self._call(
            "put",
            lambda: self.inner.put(
                key,
                source,
                content_type=content_type,
                metadata=metadata,
                cache_control=cache_control,
                cache=cache,
            ),
        )

    def get(self, key: str) -> StoredObject:
        return self._call("get", lambda: self.inner.get(key))

    def head(self, key: str) -> ObjectInfo:
        return self._call("head", lambda: self.inner.head(key))

    def read(self, key: str) -> bytes:
        return self._call("read", lambda: self.inner.read(key))

    def exists(self, key: str) -> bool:
        return self._call("exists", lambda: self.inner.exists(key))

    def delete(self, key: str) -> bool:
        return self._call("delete", lambda: self.inner.delete(key))

    def delete_prefix(self, prefix: str) -> int:
        return self._call("delete_prefix", lambda: self.inner.delete_prefix(prefix))

    def list_prefix(self, prefix: str) -> list[ListedObject]:
        return self._call("list", lambda: self.inner.list_prefix(prefix))

    def presigned_url(self, key: str, expires_in: int) -> str | None:
        return self._call("presign", lambda: self.inner.presigned_url(key, expires_in))

    def check(self) -> None:
        self._call("check", self.inner.check)
