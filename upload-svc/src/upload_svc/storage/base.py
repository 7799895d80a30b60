"""The storage interface every backend implements.

Objects are addressed by key (``<upload id>/<name>``). ``put`` is atomic: an object is
either there whole or not at all, so a failed upload never leaves a partial file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol


class ObjectNotFound(KeyError):
    """No object under that key."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    content_type: str
    chunks: Iterator[bytes]


class Storage(Protocol):
    backend: str

    def put(self, key: str, data: BinaryIO, content_type: str) -> None: ...

    def get(self, key: str) -> StoredObject: ...

    def read(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def delete_prefix(self, prefix: str) -> int: ...

    def check(self) -> None:
        """Raise when the backend cannot be used (readiness)."""
        ...
