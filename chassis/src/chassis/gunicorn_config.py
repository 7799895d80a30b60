"""gunicorn settings shared by every service.

A service's ``gunicorn.conf.py`` is two lines: it calls :func:`gunicorn_settings` and
publishes the result. Workers are gthread (the services mostly wait on I/O; see
:mod:`chassis.worker` for how they share connections); workers,
threads and timeouts come from the environment. The master validates the settings
before forking, so a bad value stops start-up once with a clear message, prepares the
prometheus multiprocess directory, and serves ``/metrics`` for all workers and the
pod's liveness (``/healthz``, from the workers' heartbeats) on the metrics port, from a
thread of its own: neither waits for a free request thread.

Nothing here imports prometheus_client at module level: the multiprocess directory must
be in the environment before the first import, in the master and in every worker.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from chassis.logs import gunicorn_logconfig
from chassis.settings import ServiceSettings, load_settings


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"invalid setting {name}: expected an integer, got {raw!r}") from None


def prepare_multiprocess_dir(service: str) -> Path:
    """Use ``PROMETHEUS_MULTIPROC_DIR`` (emptied: stale files would add up) or make one."""
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
    else:
        path = Path(tempfile.mkdtemp(prefix=f"{service}-metrics-"))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


def gunicorn_settings(
    settings_cls: type[ServiceSettings], *, app: str, port: int, metrics_port: int
) -> dict[str, Any]:
    settings = load_settings(settings_cls)
    service = settings.service_name
    created_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    multiproc_dir = prepare_multiprocess_dir(service)
    host = os.environ.get("HOST", "127.0.0.1")
    metrics_port_value = _env_int("METRICS_PORT", metrics_port)
    workers = _env_int("WEB_CONCURRENCY", 2)
    threads = _env_int("GUNICORN_THREADS", 8)

    timeout = _env_int("GUNICORN_TIMEOUT", 60)

    def when_ready(server: Any) -> None:
        from chassis.health import master_liveness
        from chassis.metrics import exposition_registry, serve_master_endpoints

        if metrics_port_value <= 0:
            return
        registry = exposition_registry() if settings.metrics_enabled else None
        # gunicorn's own watchdog bound; with it off (0), the chassis default.
        worker_timeout = float(server.timeout or 60)
        serve_master_endpoints(
            host,
            metrics_port_value,
            registry,
            lambda: master_liveness(server.WORKERS, timeout=worker_timeout),
        )
        server.log.info(
            "metrics_listening", extra={"address": f"http://{host}:{metrics_port_value}"}
        )

    def post_worker_init(worker: Any) -> None:
        from chassis.metrics import WORKER_THREADS
        from chassis.parse_errors import install_json_parse_errors

        install_json_parse_errors()
        WORKER_THREADS.set(threads)

    def child_exit(server: Any, worker: Any) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

    def on_exit(server: Any) -> None:
        if created_dir:
            shutil.rmtree(multiproc_dir, ignore_errors=True)

    return {
        "wsgi_app": app,
        "bind": [f"{host}:{_env_int('PORT', port)}"],
        "worker_class": "chassis.worker.ThreadWorker",
        "workers": workers,
        "threads": threads,
        # The app factory must run in each worker, after fork: tracing's exporter thread
        # and connection pools do not survive a fork.
        "preload_app": False,
        "timeout": timeout,
        "graceful_timeout": _env_int("GUNICORN_GRACEFUL_TIMEOUT", 25),
        "keepalive": _env_int("GUNICORN_KEEPALIVE", 5),
        "max_requests": _env_int("GUNICORN_MAX_REQUESTS", 0),
        "max_requests_jitter": _env_int("GUNICORN_MAX_REQUESTS_JITTER", 0),
        "worker_tmp_dir": os.environ.get("GUNICORN_WORKER_TMP_DIR") or None,
        "accesslog": None,
        "logger_class": "chassis.logs.GunicornLogger",
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        "logconfig_dict": gunicorn_logconfig(service, settings.log_level, settings.log_format),
        "proc_name": service,
        # One control socket per host path would be shared by every service on a laptop,
        # and a read-only root filesystem has nowhere to put it.
        "control_socket_disable": True,
        "forwarded_allow_ips": os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
        "when_ready": when_ready,
        "post_worker_init": post_worker_init,
        "child_exit": child_exit,
        "on_exit": on_exit,
    }
