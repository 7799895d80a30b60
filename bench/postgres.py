"""A throwaway PostgreSQL server from Debian's packages, for the library benchmark.

initdb into the run's work directory, a free loopback port, no fsync (the figures are
the service's, not the disk's), stopped and removed afterwards. Debian's `pg_ctl`
refuses to run as root, so as root the server runs as the `postgres` user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from testbed.processes import free_port

SUPERUSER = "bench"
DATABASE = "library"


def binaries() -> Path:
    """The newest installed PostgreSQL's bin directory (postgresql-NN from Debian)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parts[-3])
    if not found:
        raise RuntimeError("PostgreSQL is not installed (Debian package postgresql)")
    return found[-1].parent


def as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@contextmanager
def postgres_server(work: Path) -> Iterator[str]:
    """Yield the DATABASE_URL of a fresh database on a server started for the block."""
    bin_dir = binaries()
    # The server's own directory lives outside ``work``: as root the server runs as the
    # postgres user, who may not traverse a caller's private temporary directory.
    root = Path(tempfile.mkdtemp(prefix="ideasnap-bench-postgres-"))
    data, sockets = root / "pgdata", root / "pgsock"
    sockets.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        server = pwd.getpwnam("postgres")
        for path in (root, sockets):
            os.chown(path, server.pw_uid, server.pw_gid)
    port = free_port()
    log = root / "postgres.log"
    subprocess.run(
        as_server_user(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
            ]
        ),
        check=True,
        capture_output=True,
    )
    options = f"-h 127.0.0.1 -p {port} -k {sockets} -c fsync=off -c max_connections=200"
    subprocess.run(
        as_server_user(
            [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start"]
        ),
        check=True,
        capture_output=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            created = subprocess.run(
                [
                    str(bin_dir / "createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-U",
                    SUPERUSER,
                    DATABASE,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if created.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"createdb failed: {created.stderr}")
            time.sleep(0.2)
        yield f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{port}/{DATABASE}"
    finally:
        subprocess.run(
            as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
            check=False,
            capture_output=True,
        )
        if log.exists():
            work.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(log, work / "postgres.log")
        shutil.rmtree(root, ignore_errors=True)
