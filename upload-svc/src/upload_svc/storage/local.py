"""Local-directory storage, for one machine (``make run``) or a mounted volume.

An object is a file, plus a small hidden sidecar (``.<name>.meta``) with its content
type, size and metadata. Both are written to a temporary file in the same directory,
flushed to disk and renamed into place, sidecar first: the data file's rename is the
moment the object exists, so a reader never sees a partial object, and a crash at any
point leaves only hidden temporary files, which :meth:`LocalStorage.sweep_stale`
removes when the service next starts.

Objects put with ``cache=True`` (renditions, which can be made again from the original)
skip the flushes to disk, which cost more than the rest of the write. After a power
loss such a file may come back empty or short; the size recorded in its sidecar no
longer matches, and the object reads as missing, so it is made again.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import structlog

from upload_svc.storage.base import (
    ListedObject,
    ObjectInfo,
    ObjectNotFound,
    ObjectStream,
    StorageUnavailable,
    StoredObject,
    checked_key,
)

log = structlog.get_logger(__name__)

CHUNK = 64 * 1024
TEMP_PREFIX = ".tmp-"
META_SUFFIX = ".meta"


def fsync_directory(path: Path) -> None:
    """Make a rename in ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class LocalStorage:
    backend = "local"

    def __init__(self, root: Path, *, durable: bool = True) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.durable = durable

    def _path(self, key: str) -> Path:
        return self.root / checked_key(key)

    @staticmethod
    def _meta_path(path: Path) -> Path:
        return path.with_name(f".{path.name}{META_SUFFIX}")

    def _write_temp(
        self, directory: Path, write: Callable[[IO[bytes]], object], *, sync: bool
    ) -> str:
        fd, temp = tempfile.mkstemp(dir=directory, prefix=TEMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as out:
                write(out)
                out.flush()
                if sync:
                    os.fsync(out.fileno())
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return temp

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
        path = self._path(key)
        sync = self.durable and not cache
        temps: list[str] = []
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temps.append(
                self._write_temp(
                    path.parent, lambda out: shutil.copyfileobj(source, out, CHUNK), sync=sync
                )
            )
            sidecar = json.dumps(
                {
                    "content_type": content_type,
                    "size": os.stat(temps[0]).st_size,
                    "metadata": dict(metadata or {}),
                    "cache_control": cache_control,
                }
            ).encode()
            temps.append(self._write_temp(path.parent, lambda out: out.write(sidecar), sync=sync))
            os.replace(temps[1], self._meta_path(path))
            os.replace(temps[0], path)
            if sync:
                fsync_directory(path.parent)
        except OSError as error:
            raise StorageUnavailable(f"local storage write failed: {error.strerror}") from error
        finally:
            for temp in temps:
                Path(temp).unlink(missing_ok=True)

    def _info(self, key: str, path: Path, size: int) -> ObjectInfo:
        try:
            sidecar = json.loads(self._meta_path(path).read_bytes())
        except FileNotFoundError as error:
            raise ObjectNotFound(key) from error
        except ValueError as error:
            log.warning("storage_object_damaged", key=key, reason="metadata")
            raise ObjectNotFound(key) from error
        if sidecar.get("size", size) != size:
            log.warning("storage_object_damaged", key=key, reason="size")
            raise ObjectNotFound(key)
        return ObjectInfo(
            key=key,
            size=size,
            content_type=sidecar["content_type"],
            metadata=sidecar.get("metadata") or {},
        )

    def head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            size = path.stat().st_size
            return self._info(key, path, size)
        except FileNotFoundError as error:
            raise ObjectNotFound(key) from error
        except OSError as error:
            raise StorageUnavailable(f"local storage read failed: {error.strerror}") from error

    def get(self, key: str) -> StoredObject:
        path = self._path(key)
        try:
            handle = path.open("rb")
        except FileNotFoundError as error:
            raise ObjectNotFound(key) from error
        except OSError as error:
            raise StorageUnavailable(f"local storage read failed: {error.strerror}") from error
        try:
            info = self._info(key, path, os.fstat(handle.fileno()).st_size)
        except BaseException:
            handle.close()
            raise
        return StoredObject(info=info, body=ObjectStream(_chunks(handle), handle.close))

    def read(self, key: str) -> bytes:
        stored = self.get(key)
        try:
            return b"".join(stored.body)
        finally:
            stored.body.close()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> bool:
        path = self._path(key)
        try:
            path.unlink()
            existed = True
        except FileNotFoundError:
            existed = False
        except OSError as error:
            raise StorageUnavailable(f"local storage delete failed: {error.strerror}") from error
        self._meta_path(path).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # only when it became empty
        return existed

    def delete_prefix(self, prefix: str) -> int:
        directory = self._path(prefix.rstrip("/"))
        count = len(self._listed(directory))
        try:
            shutil.rmtree(directory)
        except (FileNotFoundError, NotADirectoryError):
            return count
        except OSError as error:
            raise StorageUnavailable(f"local storage delete failed: {error.strerror}") from error
        self._remove_empty_parents(directory)
        return count

    def _remove_empty_parents(self, directory: Path) -> None:
        """Tidy the directories above a removed prefix, up to the first that is still used.

        A concurrent write creates its directories before its files, so a directory it
        is about to use is never empty here.
        """
        for parent in directory.parents:
            if parent == self.root or self.root not in parent.parents:
                return
            try:
                parent.rmdir()
            except OSError:
                return

    def _listed(self, directory: Path) -> list[ListedObject]:
        listed = []
        for current, directories, files in os.walk(directory):
            directories[:] = [name for name in directories if not name.startswith(".")]
            for name in files:
                if name.startswith("."):
                    continue
                path = Path(current) / name
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue  # deleted meanwhile
                listed.append(
                    ListedObject(
                        key=path.relative_to(self.root).as_posix(),
                        size=stat.st_size,
                        modified=datetime.fromtimestamp(stat.st_mtime, UTC),
                    )
                )
        return listed

    def list_prefix(self, prefix: str) -> list[ListedObject]:
        try:
            return self._listed(self._path(prefix.rstrip("/")))
        except OSError as error:
            raise StorageUnavailable(f"local storage list failed: {error.strerror}") from error

    def presigned_url(self, key: str, expires_in: int) -> str | None:
        return None

    def check(self) -> None:
        fd, probe = tempfile.mkstemp(dir=self.root, prefix=f"{TEMP_PREFIX}readyz-")
        try:
            os.write(fd, b"ok")
        finally:
            os.close(fd)
            Path(probe).unlink(missing_ok=True)

    def sweep_stale(self, older_than_seconds: float = 3600.0) -> int:
        """Remove what interrupted writes left: temp files and sidecars without data.

        Only entries older than ``older_than_seconds`` go, so a write in progress in
        another worker is never touched.
        """
        cutoff = time.time() - older_than_seconds
        removed = 0
        # Deepest first, so a directory emptied below is judged by its own age only.
        for current, _, files in os.walk(self.root, topdown=False):
            directory = Path(current)
            try:
                # Judged before sweeping: removing files below makes the directory new.
                abandoned = directory != self.root and directory.stat().st_mtime < cutoff
            except OSError:
                continue
            for name in files:
                if not name.startswith("."):
                    continue
                orphan_meta = (
                    name.endswith(META_SUFFIX)
                    and not (directory / name[1 : -len(META_SUFFIX)]).exists()
                )
                if not (name.startswith(TEMP_PREFIX) or orphan_meta):
                    continue
                with contextlib.suppress(OSError):
                    if (directory / name).stat().st_mtime < cutoff:
                        os.unlink(directory / name)
                        removed += 1
            if abandoned:
                with contextlib.suppress(OSError):
                    directory.rmdir()  # only when empty
        return removed


def _chunks(handle: IO[bytes]) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(CHUNK):
            yield chunk
