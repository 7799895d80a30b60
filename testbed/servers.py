"""Real servers the gateway tests (and the gateway benchmark) start on loopback ports.

- :class:`RedisServer`: a throwaway ``redis-server`` that can be stopped and started
  again on the same port mid-test.
- :class:`Nginx`: Debian's nginx with a generated config (prefix, pid, logs and temp
  paths in a temporary directory, ``daemon off``), as an upstream that misbehaves on
  purpose or as the reverse proxy the gateway is compared with.
- :class:`SilentUpstream`: a listening socket that never answers (an upstream that
  hangs), for timeouts and slow-upstream checks.
- :func:`boot` and :func:`stop_all`: gunicorn services started and stopped side by side.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from testbed.processes import (
    ManagedProcess,
    Service,
    free_port,
    wait_http,
    wait_port_closed,
)


def boot(services: list[Service]) -> None:
    """Start services side by side (each boot costs seconds of imports on its own)."""
    for service in services:
        service.managed.start()
    for service in services:
        wait_http(f"{service.url}/healthz", 60, service.managed.process)


def stop_all(services: list[Service]) -> None:
    """SIGTERM every one first, then wait: their graceful stops overlap."""
    for service in services:
        process = service.managed.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for service in services:
        service.managed.stop()


def binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        raise RuntimeError(f"{name} is not installed (make system-deps installs it)")
    return found


def wait_port_open(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on port {port}")


@dataclass
class RedisServer:
    work_dir: Path
    port: int = field(default_factory=free_port)
    managed: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.managed = ManagedProcess(
            name="redis",
            args=[
                binary("redis-server"),
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.work_dir)),
            ],
            env={"PATH": "/usr/bin:/bin"},
            log_path=self.work_dir / f"redis-{self.port}.log",
        ).start()
        client = self.client()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                if client.ping():
                    client.close()
                    return self
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start: {self.managed.log_text()[-500:]}")

    def stop(self) -> None:
        if self.managed is not None:
            self.managed.stop()
            wait_port_closed(self.port)

    def client(self) -> redis.Redis:
        # No retries with backoff: a refused connection while starting is just "not yet".
        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=2, retry=Retry(NoBackoff(), 0)
        )


@dataclass
class Nginx:
    """nginx with ``http_block`` (server blocks etc.) inside a generated main config."""

    work_dir: Path
    http_block: str
    workers: int = 1
    managed: ManagedProcess | None = None

    def config(self) -> str:
        temp = self.work_dir / "temp"
        # As root, workers would switch to "nobody", which cannot use a private temp dir.
        user = "user root;\n" if os.geteuid() == 0 else ""
        return (
            f"{user}daemon off;\nworker_processes {self.workers};\n"
            f"pid {self.work_dir}/nginx.pid;\nerror_log {self.work_dir}/error.log warn;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            "  access_log off;\n"
            f"  client_body_temp_path {temp}/body;\n  proxy_temp_path {temp}/proxy;\n"
            f"  fastcgi_temp_path {temp}/fastcgi;\n  uwsgi_temp_path {temp}/uwsgi;\n"
            f"  scgi_temp_path {temp}/scgi;\n"
            f"{self.http_block}\n}}\n"
        )

    def start(self, *ports: int) -> Nginx:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / "temp").mkdir(exist_ok=True)
        conf = self.work_dir / "nginx.conf"
        conf.write_text(self.config())
        self.managed = ManagedProcess(
            name="nginx",
            args=[binary("nginx"), "-p", str(self.work_dir), "-c", str(conf)],
            env={"PATH": "/usr/sbin:/usr/bin:/bin"},
            log_path=self.work_dir / "nginx.out",
        ).start()
        try:
            for port in ports:
                wait_port_open(port)
        except TimeoutError:
            self.stop()
            errors = (self.work_dir / "error.log").read_text(errors="replace")
            raise RuntimeError(f"nginx did not start: {self.managed.log_text()} {errors}") from None
        return self

    def stop(self) -> None:
        if self.managed is not None:
            self.managed.stop()


class SilentUpstream:
    """Accepts connections (the kernel's backlog does) and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> SilentUpstream:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
