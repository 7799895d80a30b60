"""The storage interface every backend implements, and its errors.

Objects are addressed by key (``<upload id>/<name>``) and carry a content type and a
few string metadata values. ``put`` is atomic: an object is there whole or not at all,
so a failed or interrupted write never leaves a partial object. Keys are checked
against a strict pattern before any backend sees them, so no key can climb out of its
directory or prefix.

Backends raise :class:`ObjectNotFound` for a missing key and
:class:`StorageUnavailable` when the storage itself cannot be used (disk full or
read-only, S3 unreachable, denied, too slow); the API turns the latter into 503/504.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Protocol

KEY = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}(?:/[a-z0-9][a-z0-9._-]{0,127}){0,3}$")


class ObjectNotFound(KeyError):
    """No object under that key."""


class StorageUnavailable(Exception):
    """The backend failed: the answer is 503 (504 when ``timed_out``)."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


def checked_key(key: str) -> str:
    if not KEY.fullmatch(key):
        raise ValueError(f"invalid storage key {key!r}")
    return key


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    content_type: str
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ListedObject:
    """One object as a listing shows it: no metadata, so no request per object."""

    key: str
    size: int
    modified: datetime
    """When the object was written (UTC)."""


class ObjectStream:
    """An object's bytes as chunks; closing it releases the file or connection.

    Flask calls ``close`` when the response is done, also when the client went away
    halfway, so a stream handed to a response never leaks.
    """

    def __init__(self, chunks: Iterator[bytes], close: Callable[[], None] | None = None) -> None:
        self._chunks = chunks
        self._close = close

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        if self._close is not None:
            self._close()


@dataclass(frozen=True)
class StoredObject:
    info: ObjectInfo
    body: ObjectStream

    @property
    def size(self) -> int:
        return self.info.size


class Storage(Protocol):
    backend: str

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
        """Store ``source`` (read from its current position to its end) under ``key``.

        ``cache=True`` marks an object that can be made again from others: a backend
        may trade its durability for speed, provided a damaged copy reads as missing.
        """
        ...

    def get(self, key: str) -> StoredObject: ...

    def head(self, key: str) -> ObjectInfo: ...

    def read(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> bool:
        """Remove one object; False when there was none."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object under ``prefix/``; returns how many there were."""
        ...

    def list_prefix(self, prefix: str) -> list[ListedObject]:
        """Every object under ``prefix/`` (any depth), in no particular order."""
        ...

    def presigned_url(self, key: str, expires_in: int) -> str | None:
        """A URL that fetches the object directly for a while, or None (not supported)."""
        ...

    def check(self) -> None:
        """Raise when the backend cannot be used (readiness)."""
        ...
