"""What every gateway worker of one machine counts and remembers together, without Redis.

gunicorn runs the gateway as several worker processes. Counting in each worker's memory
let a 60/minute limit through 120 times with two workers, and an ``Idempotency-Key`` sent
eight times made two snaps. Without ``REDIS_URL`` the counters and idempotency entries
therefore live in one SQLite file (``LOCAL_STATE_PATH``; gunicorn's master makes a fresh
one at start) that every worker opens: one atomic statement per limit hit, the same
answers as the Redis path.

Why a shared file rather than one gateway process: a hit costs 0.035-0.054 ms here
(WAL journal, no fsync: the counts need not survive a power cut), while a proxied
request costs the gateway about 3.4 ms of CPU, so a second worker is worth far more
than the store costs (``bench/tokens.py`` measures both). Connections are opened per
thread after fork.

SQLite's own errors (a full disk, a lock held too long) fail open, as an unreachable
Redis does by default: the request is served, counted in
``gateway_rate_limit_store_errors_total`` and logged.
"""

from __future__ import annotations

import os
import random
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import structlog
from limits.storage import Storage

from gateway.idempotency import Entry, StoreUnavailable
from gateway.limit_store import note_degraded_request

log = structlog.get_logger(__name__)

SCHEME = "gateway+sqlite"
BUSY_TIMEOUT_MS = 2000
SWEEP_CHANCE = 1 / 512
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS counters "
    "(key TEXT PRIMARY KEY, count INTEGER NOT NULL, expires REAL NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS entries "
    "(key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL NOT NULL) WITHOUT ROWID",
)
INCR = (
    "INSERT INTO counters (key, count, expires) VALUES (:key, :amount, :expires) "
    "ON CONFLICT (key) DO UPDATE SET "
    "count = CASE WHEN counters.expires <= :now THEN :amount ELSE counters.count + :amount END, "
    "expires = CASE WHEN counters.expires <= :now THEN :expires ELSE counters.expires END "
    "RETURNING count, expires"
)


def private_state_path() -> Path:
    """A file of its own, for an app made without gunicorn (tests, scripts)."""
    return Path(tempfile.mkdtemp(prefix="gateway-state-")) / "state.sqlite3"


class LocalState:
    """The SQLite file, with one connection per thread of each process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self.connection() as connection:
            for statement in SCHEMA:
                connection.execute(statement)

    def connection(self) -> sqlite3.Connection:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            connection = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=OFF")
            local.connection, local.pid = connection, os.getpid()
        return local.connection

    def sweep(self, table: str) -> None:
        """Now and then, drop what has expired (reads ignore it anyway)."""
        if random.random() < SWEEP_CHANCE:  # noqa: S311 - not security
            self.connection().execute(f"DELETE FROM {table} WHERE expires <= ?", (time.time(),))  # noqa: S608

    def delete_prefix(self, table: str, prefix: str) -> int:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        cursor = self.connection().execute(
            f"DELETE FROM {table} WHERE key LIKE ? ESCAPE '\\'",  # noqa: S608
            (escaped + "%",),
        )
        return cursor.rowcount


class LocalLimitStorage(Storage):
    """A ``limits`` storage (fixed windows) on :class:`LocalState`; ``gateway+sqlite:///path``."""

    STORAGE_SCHEME = [SCHEME]

    def __init__(self, uri: str, wrap_exceptions: bool = False, **_: Any) -> None:
        super().__init__(uri, wrap_exceptions=False)
        self.state = LocalState(Path(uri.removeprefix(f"{SCHEME}://")))

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return sqlite3.Error

    def _degraded(self, error: sqlite3.Error, answer: Any) -> Any:
        note_degraded_request()
        log.warning("rate_limit_store_unavailable", error=f"{type(error).__name__}: {error}")
        return answer

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        try:
            self.state.sweep("counters")
            row = (
                self.state.connection()
                .execute(INCR, {"key": key, "amount": amount, "expires": now + expiry, "now": now})
                .fetchone()
            )
        except sqlite3.Error as error:
            return self._degraded(error, 0)
        return int(row[0])

    def _row(self, key: str) -> tuple[int, float] | None:
        row = (
            self.state.connection()
            .execute("SELECT count, expires FROM counters WHERE key = ?", (key,))
            .fetchone()
        )
        if row is None or row[1] <= time.time():
            return None
        return int(row[0]), float(row[1])

    def get(self, key: str) -> int:
        try:
            row = self._row(key)
        except sqlite3.Error as error:
            return self._degraded(error, 0)
        return 0 if row is None else row[0]

    def get_expiry(self, key: str) -> float:
        try:
            row = self._row(key)
        except sqlite3.Error as error:
            return self._degraded(error, time.time())
        return time.time() if row is None else row[1]

    def check(self) -> bool:
        try:
            self.state.connection().execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        return True

    def reset(self) -> int | None:
        return self.state.connection().execute("DELETE FROM counters").rowcount

    def clear(self, key: str) -> None:
        self.state.connection().execute("DELETE FROM counters WHERE key = ?", (key,))

    def clear_prefix(self, prefix: str) -> int:
        """Every counter whose key starts with ``prefix`` (one caller's, for erasure)."""
        return self.state.delete_prefix("counters", prefix)


class LocalIdempotencyStore:
    """Idempotency entries on :class:`LocalState`: one claim wins across every worker."""

    def __init__(self, state: LocalState) -> None:
        self.state = state

    def _transaction(self, work: Any) -> Any:
        connection = self.state.connection()
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                result = work(connection, time.time())
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        except sqlite3.Error as error:
            raise StoreUnavailable(str(error)) from error
        return result

    def claim(self, key: str, entry: Entry, ttl: int) -> Entry | None:
        def work(connection: sqlite3.Connection, now: float) -> Entry | None:
            row = connection.execute(
                "SELECT value FROM entries WHERE key = ? AND expires > ?", (key, now)
            ).fetchone()
            if row is not None:
                return Entry.loads(row[0])
            connection.execute(
                "INSERT OR REPLACE INTO entries (key, value, expires) VALUES (?, ?, ?)",
                (key, entry.dumps(), now + ttl),
            )
            return None

        self.state.sweep("entries")
        return self._transaction(work)

    def peek(self, key: str) -> Entry | None:
        try:
            row = (
                self.state.connection()
                .execute(
                    "SELECT value FROM entries WHERE key = ? AND expires > ?", (key, time.time())
                )
                .fetchone()
            )
        except sqlite3.Error as error:
            raise StoreUnavailable(str(error)) from error
        return None if row is None else Entry.loads(row[0])

    def _owned(self, connection: sqlite3.Connection, key: str, owner: str, now: float) -> bool:
        row = connection.execute(
            "SELECT value FROM entries WHERE key = ? AND expires > ?", (key, now)
        ).fetchone()
        return row is not None and Entry.loads(row[0]).owner == owner

    def complete(self, key: str, entry: Entry, ttl: int) -> None:
        def work(connection: sqlite3.Connection, now: float) -> None:
            if self._owned(connection, key, entry.owner, now):
                connection.execute(
                    "UPDATE entries SET value = ?, expires = ? WHERE key = ?",
                    (entry.dumps(), now + ttl, key),
                )

        self._transaction(work)

    def release(self, key: str, owner: str) -> None:
        def work(connection: sqlite3.Connection, now: float) -> None:
            if self._owned(connection, key, owner, now):
                connection.execute("DELETE FROM entries WHERE key = ?", (key,))

        self._transaction(work)

    def forget(self, prefix: str) -> int:
        """Every entry whose key starts with ``prefix`` (one caller's, for erasure)."""
        try:
            return self.state.delete_prefix("entries", prefix)
        except sqlite3.Error as error:
            raise StoreUnavailable(str(error)) from error
