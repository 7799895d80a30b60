"""Expiry of anonymous uploads on local disk, with no cron.

Every worker process of every upload-svc on the machine runs a sweeper thread, but only
the one holding an exclusive ``flock`` on the storage directory sweeps; the others try
again at each interval. The lock is the kernel's: it goes with the process that held
it (a crash, a restart by gunicorn's ``max_requests``), and another worker takes over at
its next try. It is per storage directory, not per machine, so two services sharing a
volume still sweep it once, and it works the same under gunicorn, ``flask run`` and the
tests. (The alternative, a thread in gunicorn's master, would run next to ``fork()``
and exist only under gunicorn.)

S3 needs no sweeper: a lifecycle rule on the ``anonymous/`` prefix expires the objects
in the bucket itself (``upload_svc.lifecycle``, ``make s3-lifecycle``).
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import structlog

from upload_svc.storage import StorageUnavailable
from upload_svc.uploads import Uploads

log = structlog.get_logger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


class RetentionSweeper:
    def __init__(
        self,
        uploads: Uploads,
        lock_dir: Path,
        interval_seconds: float,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.uploads = uploads
        self.lock_dir = lock_dir
        self.interval_seconds = interval_seconds
        self.clock = clock
        self._lock_fd: int | None = None
        self._held = False
        self._sweeping = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def holds_lock(self) -> bool:
        """Whether this sweeper is the one for its directory (taking the lock if free)."""
        if self._held:
            return True
        if self._lock_fd is None:
            self._lock_fd = os.open(self.lock_dir, os.O_RDONLY)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        self._held = True
        log.info("retention_sweeper_active", pid=os.getpid(), directory=str(self.lock_dir))
        return True

    def sweep(self) -> int | None:
        """Expire what is due now: how many uploads went, or None when another sweeps."""
        with self._sweeping:
            if not self.holds_lock():
                return None
            return self.uploads.expire_anonymous(self.clock())

    def _run(self) -> None:
        while True:
            try:
                self.sweep()
            except (OSError, StorageUnavailable) as error:
                log.warning("retention_sweep_failed", error=str(error))
            if self._stopped.wait(self.interval_seconds):
                return

    def start(self) -> RetentionSweeper:
        self._thread = threading.Thread(target=self._run, name="retention-sweep", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop sweeping and let another process take the lock."""
        self._stopped.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None
            self._held = False
