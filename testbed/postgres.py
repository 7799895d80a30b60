"""A real PostgreSQL server from Debian, in a temporary directory on a free port.

``initdb`` and ``postgres`` refuse to run as root, and CI runs as root: then both run as
the ``postgres`` system user (``runuser``), on a data directory that user owns, made
under /tmp (a pytest temp dir below /tmp/pytest-of-root is not reachable by that user).
Anyone else runs them directly. Durability is switched off: the server lives for one
test session or one benchmark. The one launcher of PostgreSQL for the tests (a session
fixture, tests/library_svc) and the benchmark (:func:`postgres_database`, bench/library).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

from testbed.processes import ManagedProcess, base_env, free_port

SUPERUSER = "postgres"


def postgres_bin_dir() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda path: int(Path(path).parts[-3]),
    )
    if not found:
        raise RuntimeError(
            "PostgreSQL is not installed: run `make system-deps` "
            "(scripts/ensure-system-packages.sh postgres)"
        )
    return Path(found[-1]).parent


def as_server_user(args: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return args
    return ["runuser", "-u", SUPERUSER, "--", *args]


@dataclass
class PostgresServer:
    port: int
    root: Path
    managed: ManagedProcess

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={database}"

    def create_database(self, name: str) -> str:
        """A new empty database; its SQLAlchemy URL."""
        with psycopg.connect(self.dsn(), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        process = self.managed.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGINT)  # fast shutdown
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(log_dir: Path, timeout: float = 60.0) -> PostgresServer:
    bin_dir = postgres_bin_dir()
    root = Path(tempfile.mkdtemp(prefix="ideasnap-postgres-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        account = pwd.getpwnam(SUPERUSER)
        for path in (root, sockets):
            os.chown(path, account.pw_uid, account.pw_gid)
    env = base_env(LC_ALL="C.UTF-8", LANG="C.UTF-8")
    initdb = subprocess.run(
        as_server_user(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ]
        ),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if initdb.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed:\n{initdb.stdout}\n{initdb.stderr}")
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    managed = ManagedProcess(
        name="postgres",
        args=as_server_user(
            [
                str(bin_dir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(sockets),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
            ]
        ),
        env=env,
        log_path=log_dir / "postgres.log",
    ).start()
    server = PostgresServer(port=port, root=root, managed=managed)
    deadline = time.monotonic() + timeout
    while True:
        if not managed.running:
            server.stop()
            raise RuntimeError(f"postgres exited:\n{managed.log_text()[-3000:]}")
        try:
            with psycopg.connect(server.dsn(), connect_timeout=1):
                return server
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                server.stop()
                raise TimeoutError(f"postgres did not accept connections in {timeout}s") from None
            time.sleep(0.1)


@contextlib.contextmanager
def postgres_database(log_dir: Path, name: str = "library") -> Iterator[str]:
    """The SQLAlchemy URL of a fresh database on a server that lives for the block."""
    server = start_postgres(log_dir)
    try:
        yield server.create_database(name)
    finally:
        server.stop()
