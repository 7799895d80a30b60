"""Start the real services (gunicorn) and real servers on free loopback ports.

Each process writes its stdout/stderr to a file in the test's temporary directory, so a
test can read the JSON log lines every service wrote, and a failure shows them.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

SERVICE_DIRS = {
    "gateway": "gateway",
    "upload-svc": "upload-svc",
    "ai-svc": "ai-svc",
    "library-svc": "library-svc",
}


LISTENER_PORTS = range(20000, 32000)
_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback port free now, below the kernel's ephemeral range, never given twice.

    A port from ``bind(0)`` lies in the ephemeral range, which every outgoing connection
    also draws from: between the check and the server's own bind, a client socket of
    another test may take it, and the server dies with "address in use". Ports below
    that range are only ever taken by listeners, and this process hands each out once.
    """
    ports = range(LISTENER_PORTS.start, min(LISTENER_PORTS.stop, _ephemeral_low()))
    for _ in range(200):
        port = random.choice(ports)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {ports.start}-{ports.stop - 1}")


def wait_http(url: str, timeout: float = 20.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException as error:
            last = error
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


def wait_port_closed(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} still open")


@dataclass
class ManagedProcess:
    """A subprocess with its log file; stopped with SIGTERM (then SIGKILL)."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    cwd: Path = ROOT
    process: subprocess.Popen | None = None

    def start(self) -> ManagedProcess:
        handle = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.args,
            cwd=self.cwd,
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        handle.close()
        return self

    def terminate(self) -> None:
        """Ask the process to stop without waiting, so that several stop together."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(5)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.log_text().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    records.append(record)
        return records


def base_env(**extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OTEL_", "SENTRY_", "GEMINI_", "PROMETHEUS_", "REDIS_"))
    }
    env.update({"PATH": f"{BIN}:{env.get('PATH', '')}", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


@dataclass
class Service:
    """One service under gunicorn: its ports and process."""

    name: str
    port: int
    metrics_port: int
    managed: ManagedProcess

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self, timeout: float = 30.0) -> Service:
        self.managed.start()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait for /healthz; a service that dies first fails with its last log lines."""
        try:
            wait_http(f"{self.url}/healthz", timeout, self.managed.process)
        except RuntimeError as error:
            tail = "\n".join(self.managed.log_text().splitlines()[-20:])
            raise RuntimeError(f"{self.name}: {error}\n{tail}") from error

    def stop(self) -> int | None:
        code = self.managed.stop()
        wait_port_closed(self.port)
        return code


def gunicorn_service(
    name: str, tmp: Path, env: dict[str, str], *, workers: int = 2, threads: int = 4
) -> Service:
    port, metrics_port = free_port(), free_port()
    service_env = base_env(
        PORT=str(port),
        METRICS_PORT=str(metrics_port),
        HOST="127.0.0.1",
        WEB_CONCURRENCY=str(workers),
        GUNICORN_THREADS=str(threads),
        GUNICORN_GRACEFUL_TIMEOUT="10",
        **env,
    )
    config = ROOT / SERVICE_DIRS[name] / "gunicorn.conf.py"
    managed = ManagedProcess(
        name=name,
        args=[str(BIN / "gunicorn"), "-c", str(config)],
        env=service_env,
        log_path=tmp / f"{name}.log",
    )
    return Service(name=name, port=port, metrics_port=metrics_port, managed=managed)


@dataclass
class Stack:
    """The services wired together on loopback."""

    upload: Service
    ai: Service
    gateway: Service
    extra: dict[str, Any] = field(default_factory=dict)
    library: Service | None = None

    @property
    def services(self) -> list[Service]:
        """The services every snap passes through (anonymous ones never reach library-svc)."""
        return [self.upload, self.ai, self.gateway]

    @property
    def processes(self) -> list[Service]:
        """Every service of the stack, in start order."""
        library = [self.library] if self.library is not None else []
        return [self.upload, self.ai, *library, self.gateway]

    @property
    def url(self) -> str:
        return self.gateway.url

    def stop(self) -> None:
        """Every service shuts down gracefully at the same time; then each is waited for."""
        for service in reversed(self.processes):
            service.managed.terminate()
        for service in reversed(self.processes):
            service.managed.stop()


def migrate_library(database_url: str, log_path: Path) -> None:
    """library-svc's own migrations, as ``make run`` applies them before it starts."""
    with log_path.open("ab") as handle:
        subprocess.run(
            [str(BIN / "python"), "-m", "library_svc.migrate", "upgrade"],
            cwd=ROOT,
            env=base_env(DATABASE_URL=database_url),
            stdout=handle,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=120,
        )


STACK_START_SECONDS = 60.0


def start_stack(
    tmp: Path,
    *,
    workers: int = 2,
    threads: int = 4,
    common_env: dict[str, str] | None = None,
    upload_env: dict[str, str] | None = None,
    ai_env: dict[str, str] | None = None,
    library_env: dict[str, str] | None = None,
    gateway_env: dict[str, str] | None = None,
) -> Stack:
    """upload-svc, ai-svc, library-svc (SQLite in ``tmp``, migrated first) and the gateway.

    library-svc talks to Firebase only when given the Auth emulator
    (``FIREBASE_AUTH_EMULATOR_HOST`` in ``common_env`` or ``library_env``).
    """
    common = dict(common_env or {})
    upload = gunicorn_service(
        "upload-svc",
        tmp,
        {"STORAGE_DIR": str(tmp / "storage"), **common, **(upload_env or {})},
        workers=workers,
        threads=threads,
    )
    ai = gunicorn_service(
        "ai-svc",
        tmp,
        {"UPLOAD_SVC_URL": upload.url, **common, **(ai_env or {})},
        workers=workers,
        threads=threads,
    )
    database_url = f"sqlite:///{tmp / 'library.db'}"
    library_settings = {
        "DATABASE_URL": database_url,
        "UPLOAD_SVC_URL": upload.url,
        **common,
        **(library_env or {}),
    }
    library_settings.setdefault(
        "FIREBASE_CLAIMS_ENABLED",
        "true" if library_settings.get("FIREBASE_AUTH_EMULATOR_HOST") else "false",
    )
    library = gunicorn_service(
        "library-svc", tmp, library_settings, workers=workers, threads=threads
    )
    gateway = gunicorn_service(
        "gateway",
        tmp,
        {
            "UPLOAD_SVC_URL": upload.url,
            "AI_SVC_URL": ai.url,
            "LIBRARY_SVC_URL": library.url,
            **common,
            **(gateway_env or {}),
        },
        workers=workers,
        threads=threads,
    )
    stack = Stack(upload=upload, ai=ai, gateway=gateway, library=library)
    try:
        migrate_library(library_settings["DATABASE_URL"], tmp / "library-migrate.log")
        # No service waits for another at start (readiness is about its own dependencies),
        # so they boot side by side.
        for service in stack.processes:
            service.managed.start()
        for service in stack.processes:
            service.wait_ready(STACK_START_SECONDS)
    except BaseException:
        stack.stop()
        raise
    return stack


@contextlib.contextmanager
def running_stack(tmp: Path, **kwargs: Any) -> Iterator[Stack]:
    stack = start_stack(tmp, **kwargs)
    try:
        yield stack
    finally:
        stack.stop()
