"""Local-directory storage, for one machine (``make run``) or a mounted volume.

Writes go to a temporary file in the same directory and are renamed into place, so a
reader never sees a partial object and a crash leaves only a temp file that is removed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from upload_svc.storage.base import ObjectNotFound, StoredObject

CHUNK = 64 * 1024
CONTENT_TYPE_SUFFIX = ".content-type"


class LocalStorage:
    backend = "local"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise ObjectNotFound(key)
        return path

    def put(self, key: str, data: BinaryIO, content_type: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(data, out, CHUNK)
                out.flush()
                os.fsync(out.fileno())
            Path(f"{tmp}{CONTENT_TYPE_SUFFIX}").write_text(content_type)
            os.replace(f"{tmp}{CONTENT_TYPE_SUFFIX}", f"{path}{CONTENT_TYPE_SUFFIX}")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            Path(f"{tmp}{CONTENT_TYPE_SUFFIX}").unlink(missing_ok=True)
            raise

    def get(self, key: str) -> StoredObject:
        path = self._path(key)
        try:
            size = path.stat().st_size
            content_type = Path(f"{path}{CONTENT_TYPE_SUFFIX}").read_text()
        except FileNotFoundError as error:
            raise ObjectNotFound(key) from error
        return StoredObject(key=key, size=size, content_type=content_type, chunks=_chunks(path))

    def read(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as error:
            raise ObjectNotFound(key) from error

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete_prefix(self, prefix: str) -> int:
        directory = self._path(prefix.rstrip("/"))
        if not directory.is_dir():
            return 0
        count = sum(
            1 for child in directory.iterdir() if not child.name.endswith(CONTENT_TYPE_SUFFIX)
        )
        shutil.rmtree(directory)
        return count

    def check(self) -> None:
        probe = self.root / ".readyz"
        probe.write_bytes(b"ok")
        probe.unlink()


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk
