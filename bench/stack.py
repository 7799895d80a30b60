"""The stack a scenario measures: the three services, the fake Gemini and Redis, on loopback.

Each service runs as one gunicorn tree with the chart's default workers and threads,
which is what "per pod" means in the results. ai-svc talks to the fake Gemini with the
real google-genai client at a fixed latency, so the model's think time is the same in
every run. Redis backs the gateway's rate limits and ai-svc's cache as it does in a
cluster (when redis-server is installed; otherwise both fall back to memory, and the
result says so). Limits are raised far above the offered load: the benchmark measures
capacity, not the limiter's refusals, but the limiter still does its work per request.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests

from bench.chart import trace_sampling
from bench.console import say
from bench.settings import BenchSettings
from testbed.fakes.gemini import FakeGeminiProcess
from testbed.metrics import samples
from testbed.processes import (
    ManagedProcess,
    Service,
    Stack,
    free_port,
    gunicorn_service,
)
from testbed.resources import TreeUsage, tree_usage

OBSERVABILITY_OFF = {
    "OTEL_SDK_DISABLED": "true",
    "METRICS_ENABLED": "false",
    "LOG_LEVEL": "WARNING",
}
UNLIMITED = {
    "RATE_LIMIT_DEFAULT": "1000000/minute",
    "RATE_LIMIT_AI": "1000000/minute",
    "AI_DAILY_QUOTA": "100000000/day",
}
GEMINI_KEY = "bench-key"
START_TIMEOUT_SECONDS = 60.0


@dataclass
class RedisServer:
    managed: ManagedProcess
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def start_redis(work_dir: Path) -> RedisServer | None:
    """A throwaway redis-server (no persistence), or None when it is not installed."""
    binary = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/sbin")
    if binary is None:
        return None
    port = free_port()
    managed = ManagedProcess(
        name="redis",
        args=[
            binary,
            *("--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no"),
        ],
        env={"PATH": "/usr/bin:/bin"},
        log_path=work_dir / "redis.log",
    ).start()
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
    for _ in range(100):
        with contextlib.suppress(redis.RedisError):
            if client.ping():
                return RedisServer(managed, port)
        if not managed.running:
            break
        time.sleep(0.05)
    managed.stop()
    raise RuntimeError(f"redis-server did not start: {managed.log_text()[-500:]}")


@dataclass
class BenchStack:
    stack: Stack
    gemini: FakeGeminiProcess
    redis: RedisServer | None
    observability: bool
    otlp_endpoint: str | None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.stack.url

    def usage(self) -> dict[str, TreeUsage]:
        """Each service's process tree right now (gunicorn master + workers)."""
        return {
            service.name: tree_usage(service.managed.process.pid)
            for service in self.stack.services
            if service.managed.process is not None
        }

    def helpers_usage(self) -> dict[str, TreeUsage]:
        """The stand-ins sharing the machine: the fake Gemini (Google's side) and Redis."""
        found = {}
        if self.gemini.process is not None:
            found["fake-gemini"] = tree_usage(self.gemini.process.pid)
        if self.redis is not None and self.redis.managed.process is not None:
            found["redis"] = tree_usage(self.redis.managed.process.pid)
        return found

    def gemini_stats(self) -> dict[str, Any]:
        stats = self.gemini.stats()
        stats.pop("requests", None)
        return stats

    def scrape(self) -> dict[str, list[tuple[str, dict[str, str], float]]]:
        """Every service's /metrics now (empty for a service with metrics off)."""
        found: dict[str, list[tuple[str, dict[str, str], float]]] = {}
        for service in self.stack.services:
            try:
                found[service.name] = samples(service.metrics_url)
            except requests.RequestException:
                found[service.name] = []
        return found


def stack_config(settings: BenchSettings, observability: bool) -> dict[str, Any]:
    return {
        "pods": {
            name: f"{shape.workers} workers x {shape.threads} threads ({shape.source})"
            for name, shape in settings.pods.items()
        },
        "gemini": "fake Gemini REST API (testbed/fakes/gemini.py) via the real google-genai client",
        "gemini_latency_seconds": settings.gemini_latency,
        "observability": "on" if observability else "off",
        "observability_env": {} if observability else dict(OBSERVABILITY_OFF),
        "gateway_limits": dict(UNLIMITED),
    }


def start_together(
    work_dir: Path,
    settings: BenchSettings,
    *,
    common: dict[str, str],
    upload_env: dict[str, str],
    ai_env: dict[str, str],
    gateway_env: dict[str, str],
) -> Stack:
    """The three services wired as ``start_stack`` wires them, but booted in parallel.

    No service needs another to start (readiness is each one's own business), and on a
    small machine booting them one after another triples the wait for nothing.
    """

    def service(name: str, env: dict[str, str]) -> Service:
        shape = settings.pod(name)
        return gunicorn_service(
            name, work_dir, {**common, **env}, workers=shape.workers, threads=shape.threads
        )

    upload = service("upload-svc", upload_env)
    ai = service("ai-svc", {"UPLOAD_SVC_URL": upload.url, **ai_env})
    gateway = service(
        "gateway", {"UPLOAD_SVC_URL": upload.url, "AI_SVC_URL": ai.url, **gateway_env}
    )
    stack = Stack(upload=upload, ai=ai, gateway=gateway)
    try:
        for member in stack.services:
            member.managed.start()
        for member in stack.services:
            member.wait_ready(START_TIMEOUT_SECONDS)
    except BaseException:
        stop_together(stack)
        raise
    return stack


def stop_together(stack: Stack) -> None:
    """SIGTERM every service at once, then wait: each gunicorn takes ~1 s to notice."""
    for service in stack.services:
        if service.managed.running and service.managed.process is not None:
            with contextlib.suppress(ProcessLookupError):
                service.managed.process.send_signal(signal.SIGTERM)
    stack.stop()


def prime(stack: Stack, photo: bytes) -> dict[str, Any]:
    """One snap before anything is timed: first-request costs (lazy imports, client and
    pool set-up) are not load, and a stack that cannot snap at all is named up front."""
    started = time.monotonic()
    try:
        response = requests.post(
            f"{stack.url}/v1/snaps",
            files={"image": ("photo.jpg", photo, "image/jpeg")},
            data={"template": "social_post", "tone": "friendly", "language": "en", "count": "3"},
            timeout=120,
        )
    except requests.RequestException as error:
        return {"ok": False, "error": f"{type(error).__name__}: {error}"[:300]}
    answer: dict[str, Any] = {
        "ok": response.status_code == 201,
        "status": response.status_code,
        "seconds": round(time.monotonic() - started, 2),
    }
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code == 201:
        answer["provider"] = body.get("provider")
        answer["model"] = body.get("model")
    else:
        answer["error"] = response.text[:300]
    return answer


@contextlib.contextmanager
def bench_stack(
    work_dir: Path,
    settings: BenchSettings,
    *,
    observability: bool = True,
    otlp_endpoint: str | None = None,
    gemini: FakeGeminiProcess | None = None,
    priming_photo: bytes | None = None,
) -> Iterator[BenchStack]:
    """Start everything a scenario needs; stop it all (and drop stored photos) on exit."""
    work_dir.mkdir(parents=True, exist_ok=True)
    storage = Path(tempfile.mkdtemp(prefix="ideasnap-bench-storage-"))
    own_gemini = gemini is None
    fake = gemini or FakeGeminiProcess(
        latency=settings.gemini_latency, log_path=work_dir / "fake-gemini.log"
    )
    redis_server: RedisServer | None = None
    stack: Stack | None = None
    try:
        if own_gemini:
            fake.start()
        redis_server = start_redis(work_dir)
        common = (
            {"LOG_LEVEL": "INFO", **trace_sampling()} if observability else dict(OBSERVABILITY_OFF)
        )
        if observability and otlp_endpoint:
            common["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp_endpoint
        shared = {"REDIS_URL": redis_server.url} if redis_server else {}
        stack = start_together(
            work_dir,
            settings,
            common=common,
            upload_env={"STORAGE_DIR": str(storage)},
            ai_env={"GEMINI_API_KEY": GEMINI_KEY, "GEMINI_BASE_URL": fake.url, **shared},
            gateway_env={**UNLIMITED, **shared},
        )
        config = stack_config(settings, observability)
        config["redis"] = redis_server is not None
        config["otlp_export"] = bool(observability and otlp_endpoint)
        say(f"  stack up in {work_dir.name}: {stack.url} (observability {config['observability']})")
        if priming_photo is not None:
            config["first_snap"] = prime(stack, priming_photo)
            say(f"  first snap: {config['first_snap']}")
        yield BenchStack(
            stack=stack,
            gemini=fake,
            redis=redis_server,
            observability=observability,
            otlp_endpoint=otlp_endpoint if observability else None,
            config=config,
        )
    finally:
        if stack is not None:
            stop_together(stack)
            say(f"  stack in {work_dir.name} stopped")
        if redis_server is not None:
            redis_server.managed.stop()
        if own_gemini:
            fake.stop()
        shutil.rmtree(storage, ignore_errors=True)


_shared: dict[str, tuple[BenchStack, contextlib.ExitStack]] = {}


@contextlib.contextmanager
def scenario_stack(
    work_dir: Path, settings: BenchSettings, *, priming_photo: bytes | None = None
) -> Iterator[BenchStack]:
    """The stack of a scenario that needs the default one (knee, streaming, soak).

    A full run starts a fresh stack per scenario, so no scenario's figures carry another's
    state. A smoke run only proves each scenario works, and starting the stack is most
    of its time, so there they share one, started on first use and stopped by
    :func:`close_shared_stack` (bench.run calls it when the run ends).
    """
    if not settings.smoke:
        with bench_stack(work_dir, settings, priming_photo=priming_photo) as stack:
            yield stack
        return
    if "default" not in _shared:
        exits = contextlib.ExitStack()
        stack = exits.enter_context(bench_stack(work_dir, settings, priming_photo=priming_photo))
        _shared["default"] = (stack, exits)
    yield _shared["default"][0]


def close_shared_stack() -> None:
    """Stop the stack smoke scenarios shared, if one was started."""
    shared = _shared.pop("default", None)
    if shared is not None:
        shared[1].close()
