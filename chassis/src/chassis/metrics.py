"""Prometheus metrics that stay correct with several gunicorn workers.

gunicorn runs each service as several processes; a counter kept in one worker's memory
would be scraped at random from whichever worker answered. prometheus-client's
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by :mod:`chassis.gunicorn_config`
before any worker starts) keeps each worker's values in files that one collector adds
up. The exposition is served on a separate metrics port, never on the public one.

Every service exposes the same RED metrics, so one dashboard query covers all three.
"""

from __future__ import annotations

import glob
import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Gauge,
    Histogram,
    generate_latest,
    make_wsgi_app,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

REQUEST_DURATION = Histogram(
    "http_server_request_duration_seconds",
    "Duration of HTTP requests served, by method, route template and status.",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
)
REQUESTS_IN_FLIGHT = Gauge(
    "http_server_active_requests",
    "HTTP requests being served right now.",
    multiprocess_mode="livesum",
)
WORKER_THREADS = Gauge(
    "http_server_worker_threads",
    "Request threads this service can run at once (capacity for saturation).",
    multiprocess_mode="livesum",
)
SERVICE_INFO = Gauge(
    "ideasnap_service_info",
    "Constant 1, labelled with the running release.",
    ["release", "environment"],
    multiprocess_mode="liveall",
)
UNMATCHED_ROUTE = "unmatched"


def multiprocess_enabled() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class WorkerFilesCollector(Collector):
    """prometheus-client's multiprocess sum, minus files a worker has only begun to create.

    A worker creates its file for a kind of metric on first use (the first requests
    after it starts, or after a recycle), and the file exists empty for a moment before
    it is sized. ``MultiProcessCollector`` fails the whole scrape on such a file
    (client_python #1199), so Prometheus saw a 500 and a gap in every series each time
    a worker started. An empty file holds no values yet: leaving it out loses nothing.
    """

    def __init__(self, path: str) -> None:
        self._path = path

    def collect(self) -> Iterable[Metric]:
        from prometheus_client.multiprocess import MultiProcessCollector

        settled = []
        for path in glob.glob(os.path.join(self._path, "*.db")):
            try:
                if os.stat(path).st_size > 0:
                    settled.append(path)
            except FileNotFoundError:
                continue
        return MultiProcessCollector.merge(settled, accumulate=True)


def exposition_registry() -> CollectorRegistry:
    """The registry to scrape: the sum over workers in multiprocess mode."""
    if not multiprocess_enabled():
        return REGISTRY
    registry = CollectorRegistry()
    registry.register(WorkerFilesCollector(os.environ["PROMETHEUS_MULTIPROC_DIR"]))
    return registry


def render_metrics() -> Response:
    return Response(generate_latest(exposition_registry()), mimetype=CONTENT_TYPE_LATEST)


def route_label() -> str:
    rule = request.url_rule
    return rule.rule if rule is not None else UNMATCHED_ROUTE


def exclude_from_red_metrics() -> None:
    """Leave this request out of the API's RED metrics (a service counts it in its own).

    For what is not an API call, such as web pages a service also serves: their
    requests would otherwise dilute the API's latency and error-rate objectives.
    """
    g.chassis_red_excluded = True


def install_red_metrics(app: Flask) -> None:
    """Time every request by route template (never raw path: ids would explode cardinality)."""

    @app.before_request
    def _start_timer() -> None:
        g.chassis_started = time.perf_counter()
        REQUESTS_IN_FLIGHT.inc()
        g.chassis_in_flight = True

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.get("chassis_started")
        if started is not None:
            g.chassis_duration = time.perf_counter() - started
            if g.get("chassis_red_excluded"):
                return response
            REQUEST_DURATION.labels(
                request.method, route_label(), str(response.status_code)
            ).observe(g.chassis_duration)
        return response

    @app.teardown_request
    def _done(_: BaseException | None) -> None:
        if g.pop("chassis_in_flight", False):
            REQUESTS_IN_FLIGHT.dec()


Liveness = Callable[[], tuple[bool, dict[str, Any]]]
"""The gunicorn master's verdict on its workers (see chassis.health.master_liveness)."""


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    """One thread per connection: a slow scrape never holds up a liveness probe."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes and scrapes every few seconds are not worth a log line each."""


def master_endpoints_app(
    registry: CollectorRegistry | None, liveness: Liveness
) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """``/metrics`` (when metrics are on) and ``/healthz`` for the gunicorn master's listener."""
    metrics = make_wsgi_app(registry) if registry is not None else None

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            alive, report = liveness()
            body = json.dumps(report).encode()
            status = "200 OK" if alive else "503 Service Unavailable"
            start_response(
                status,
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]
        if path == "/metrics" and metrics is not None:
            return metrics(environ, start_response)
        body = b'{"error": {"code": "not_found", "message": "Not found.", "request_id": ""}}'
        start_response(
            "404 Not Found",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return app


def serve_master_endpoints(
    host: str, port: int, registry: CollectorRegistry | None, liveness: Liveness
) -> WSGIServer:
    """Serve the master's endpoints from a daemon thread of the gunicorn master.

    The master never runs requests, so this listener answers while every worker thread
    is busy: it is what the kubelet's liveness probe and Prometheus talk to.
    """
    server = make_server(
        host,
        port,
        master_endpoints_app(registry, liveness),
        server_class=_ThreadingServer,
        handler_class=_QuietHandler,
    )
    thread = threading.Thread(target=server.serve_forever, name="master-endpoints", daemon=True)
    thread.start()
    return server
