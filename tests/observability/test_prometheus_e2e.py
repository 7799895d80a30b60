"""The operators' view against a real Prometheus scraping the real stack.

The three services run under gunicorn (2 workers each), ai-svc talks to the fake Gemini
through the real google-genai client, the gateway keeps its limits in a real Redis, and
Debian's Prometheus scrapes them every second with the chart's rendered rules loaded.
After a short burst of real traffic (snaps, a rejected upload, a rate-limited client,
an upstream failure, a blocked answer, a foreign Origin, Redis going away) every panel
query of every dashboard and every rule expression must run without error, the RED
panels must show data, and every metric the dashboards and alerts read must exist: a
metric renamed in a service fails here.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from observability.dashboards import model, specs
from observability.inventory import (
    interpolate,
    metric_names,
    panel_queries,
    rule_groups,
    rule_queries,
    variable_values,
)
from testbed.fakes.gemini import FakeGemini
from testbed.images import photo
from testbed.processes import ManagedProcess, Stack, base_env, free_port, start_stack
from tests.observability.chart import NAMESPACE, render
from tests.observability.prometheus import Prometheus, QueryError, Target, running_prometheus

pytestmark = pytest.mark.integration

# Series that come from kube-state-metrics in a cluster, not from IdeaSnap's services.
FROM_KUBE_STATE_METRICS = (
    "kube_pod_container_status_restarts_total",
    "kube_horizontalpodautoscaler_status_current_replicas",
    "kube_horizontalpodautoscaler_status_desired_replicas",
    "kube_horizontalpodautoscaler_spec_max_replicas",
    "kube_horizontalpodautoscaler_spec_min_replicas",
)
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
RED_ROW_MARK = "(RED)"
# Grafana's built-in variables, with windows that span this test's whole history (a
# minute or two even on a loaded machine), so every event of the burst is in range.
BUILTINS = {"__rate_interval": "5m", "__interval": "15s", "__range": "10m", "__range_s": "600"}
SNAP_FORM = {"template": "social_post", "tone": "friendly", "language": "en", "count": "3"}


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ManagedProcess, int]]:
    """A real redis-server for the gateway's limits and ai-svc's cache, as in the cluster.

    The burst stops it on purpose. ai-svc's cache must be the shared one: with a cache per
    worker, whether a repeated snap is a hit depends on which worker its pooled connection
    reaches.
    """
    tmp = tmp_path_factory.mktemp("redis")
    port = free_port()
    server = ManagedProcess(
        name="redis",
        args=[REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        env=base_env(),
        log_path=tmp / "redis.log",
        cwd=tmp,
    ).start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            break
        time.sleep(0.05)
    yield server, port
    server.stop()


@pytest.fixture(scope="module")
def gemini() -> Iterator[FakeGemini]:
    with FakeGemini(thinking_tokens=64) as fake:
        yield fake


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    gemini: FakeGemini,
    redis: tuple[ManagedProcess, int],
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("stack")
    _, redis_port = redis
    running = start_stack(
        tmp,
        workers=2,
        threads=4,
        ai_env={
            "GEMINI_API_KEY": "test-key-for-the-fake",
            "GEMINI_BASE_URL": gemini.url,
            "GEMINI_MAX_ATTEMPTS": "2",
            "GEMINI_BACKOFF_BASE_SECONDS": "0.01",
            "GEMINI_BACKOFF_MAX_SECONDS": "0.05",
            "GEMINI_TIMEOUT_SECONDS": "5",
            # Every injected failure takes the same path (no breaker opening halfway), so
            # both rounds produce the same 5xx series and its rate is not lost to the
            # first sample of a new series.
            "GEMINI_BREAKER_FAILURES": "1000",
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/1",
        },
        gateway_env={
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "RATE_LIMIT_DEFAULT": "40/minute",
            "RATE_LIMIT_AI": "30/minute",
            "AI_DAILY_QUOTA": "100/day",
            "CORS_ALLOWED_ORIGINS": "https://app.example.com",
        },
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    return rule_groups(render(namespace=NAMESPACE))


@pytest.fixture(scope="module")
def prometheus(
    tmp_path_factory: pytest.TempPathFactory, stack: Stack, rules: list[dict[str, Any]]
) -> Iterator[Prometheus]:
    tmp = tmp_path_factory.mktemp("scrape")
    targets = [
        Target(
            job=service.name,
            address=f"127.0.0.1:{service.metrics_port}",
            labels={
                "namespace": NAMESPACE,
                "service": f"ideasnap-{service.name}",
                "pod": f"ideasnap-{service.name}-0",
                "endpoint": "metrics",
            },
        )
        for service in [*stack.services, stack.library]
        if service is not None
    ]
    with running_prometheus(tmp, targets, rules) as running:
        running.wait_until(lambda: running.targets_up(len(targets)), "every target up")
        yield running


def snap(stack: Stack, image: bytes, **headers: str) -> requests.Response:
    return requests.post(
        f"{stack.url}/v1/snaps",
        files={"image": ("photo.jpg", image, "image/jpeg")},
        data=SNAP_FORM,
        headers=headers,
        timeout=30,
    )


def round_of_traffic(stack: Stack, gemini: FakeGemini, key: str) -> dict[str, int]:
    """One of each kind of request a user or a misbehaving client makes."""
    statuses: dict[str, int] = {}
    for width in (640, 656, 672):
        response = snap(stack, photo(width, 480))
        assert response.status_code == 201, response.text
    # The same photo and preset as before: ideas from ai-svc's cache.
    assert snap(stack, photo(800, 600)).status_code == 201
    # A retried POST with the same Idempotency-Key is answered from the first answer.
    assert snap(stack, photo(700, 500), **{"Idempotency-Key": key}).status_code == 201

    rejected = requests.post(
        f"{stack.url}/v1/uploads",
        files={"image": ("notes.txt", b"not an image, just text\n" * 20, "text/plain")},
        timeout=10,
    )
    statuses["rejected_upload"] = rejected.status_code
    assert rejected.status_code == 415, rejected.text

    # Gemini fails on every attempt of both models: the snap fails upstream.
    gemini.control(faults=["503"] * 8)
    failed = snap(stack, photo(660, 500))
    statuses["upstream_failure"] = failed.status_code
    assert failed.status_code >= 500, failed.text
    gemini.control(faults=["blocked"])
    blocked = snap(stack, photo(680, 500))
    statuses["blocked"] = blocked.status_code
    assert blocked.status_code >= 400, blocked.text
    gemini.control(faults=[])

    foreign = requests.get(
        f"{stack.url}/v1/presets", headers={"Origin": "https://elsewhere.example"}, timeout=10
    )
    statuses["foreign_origin"] = foreign.status_code
    return statuses


@pytest.fixture(scope="module")
def burst(
    stack: Stack,
    gemini: FakeGemini,
    redis: tuple[ManagedProcess, int],
    prometheus: Prometheus,
) -> dict[str, int]:
    """Real traffic of every kind the dashboards and alerts watch; returns the statuses.

    Prometheus computes a rate from the increase between two scrapes, and a labelled
    series only exists from its first event on, so the traffic comes in two rounds with
    a scrape in between: the second round is what the rates see.
    """
    key = secrets.token_hex(8)
    round_of_traffic(stack, gemini, key)
    prometheus.wait_for_scrape_after(time.time())
    statuses = round_of_traffic(stack, gemini, key)

    # One client goes over RATE_LIMIT_DEFAULT.
    for _ in range(60):
        limited = requests.get(f"{stack.url}/v1/presets", timeout=10)
        if limited.status_code == 429:
            break
    statuses["rate_limited"] = limited.status_code
    assert limited.status_code == 429, limited.text
    # The 429 series was born in this burst: a rate needs two samples of it, so let one
    # scrape see it before the last request of the limited client.
    prometheus.wait_for_scrape_after(time.time())
    requests.get(f"{stack.url}/v1/presets", timeout=10)

    # Redis goes away: the gateway decides limits without it (and counts that).
    server, _ = redis
    server.stop()
    for _ in range(3):
        requests.get(f"{stack.url}/v1/presets", timeout=10)

    # Every event scraped, and every rule evaluated over them.
    prometheus.wait_for_rules_after(prometheus.wait_for_scrape_after(time.time()))
    return statuses


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(name, row, executable expression) of every panel query of every dashboard."""
    found = []
    for spec in specs():
        dashboard = model(spec)
        values = variable_values(dashboard)
        for query in panel_queries(dashboard):
            found.append((query.name, query.row, interpolate(query.expr, values, BUILTINS)))
    return found


def test_every_panel_query_runs_and_red_panels_show_data(
    prometheus: Prometheus, burst: dict[str, int]
) -> None:
    failures: list[str] = []
    empty_red: list[str] = []
    for name, row, expr in dashboard_queries():
        try:
            result = prometheus.query(expr)
        except QueryError as error:
            failures.append(f"{name}: {error}")
            continue
        if RED_ROW_MARK in row and not result:
            empty_red.append(name)
    assert failures == []
    assert empty_red == []


def test_red_panels_see_each_service_and_the_snaps_route(
    prometheus: Prometheus, burst: dict[str, int]
) -> None:
    queries = {name: expr for name, _, expr in dashboard_queries()}
    per_service = prometheus.query(queries["ideasnap-overview / Requests per second / A"])
    assert {series["metric"]["job"] for series in per_service} == {
        "gateway",
        "upload-svc",
        "ai-svc",
        "library-svc",
    }
    by_route = prometheus.query(queries["ideasnap-overview / Requests per second by route / A"])
    routes = {(s["metric"]["job"], s["metric"]["method"], s["metric"]["route"]) for s in by_route}
    assert ("gateway", "POST", "/v1/snaps") in routes
    errors = prometheus.query(queries["ideasnap-overview / Error ratio (5xx) by route / A"])
    snaps = [s for s in errors if s["metric"]["route"] == "/v1/snaps"]
    assert snaps, errors
    assert float(snaps[0]["value"][1]) > 0, ("the upstream failure is a 5xx snap", by_route)
    client_errors = prometheus.query(
        queries["ideasnap-overview / Client errors (4xx) by status / A"]
    )
    assert {"415", "429"} <= {s["metric"]["status"] for s in client_errors}


def test_every_rule_expression_runs_and_prometheus_evaluates_them_cleanly(
    prometheus: Prometheus, burst: dict[str, int], rules: list[dict[str, Any]]
) -> None:
    queries = rule_queries([{"kind": "PrometheusRule", "spec": {"groups": rules}}])
    assert len(queries) == 31
    failures = []
    for query in queries:
        try:
            prometheus.query(query.expr)
        except QueryError as error:
            failures.append(f"{query.name}: {error}")
    assert failures == []
    loaded = prometheus.rules()
    assert len(loaded) == len(queries)
    assert [rule["name"] for rule in loaded if rule["health"] != "ok"] == []
    assert [rule.get("lastError") for rule in loaded if rule.get("lastError")] == []
    # The recording rules see the real failed snap among the real successful ones.
    ratio = prometheus.value("ideasnap:snaps_availability_errors:ratio_rate5m")
    assert ratio is not None
    assert 0 < ratio < 1
    latency = prometheus.value("ideasnap:snaps_latency_slow:ratio_rate5m")
    assert latency is not None
    assert 0 <= latency < 1


def referenced_metrics(rules: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Metric name -> the queries that read it, over every dashboard and rule."""
    users: dict[str, set[str]] = {}
    for name, _, expr in dashboard_queries():
        for metric in metric_names(expr):
            users.setdefault(metric, set()).add(name)
    for query in rule_queries([{"kind": "PrometheusRule", "spec": {"groups": rules}}]):
        for metric in metric_names(query.expr):
            users.setdefault(metric, set()).add(query.name)
    return users


def missing_metrics(prometheus: Prometheus, metrics: set[str]) -> list[str]:
    return sorted(
        metric for metric in metrics if not prometheus.query(f'count({{__name__="{metric}"}})')
    )


def test_every_metric_the_view_reads_is_exported(
    prometheus: Prometheus, burst: dict[str, int], rules: list[dict[str, Any]]
) -> None:
    users = referenced_metrics(rules)
    recorded = {rule["record"] for group in rules for rule in group["rules"] if "record" in rule}
    from_services = set(users) - set(FROM_KUBE_STATE_METRICS) - recorded - {"up"}
    assert set(FROM_KUBE_STATE_METRICS) <= set(users)
    assert len(from_services) >= 25
    missing = missing_metrics(prometheus, from_services)
    assert missing == [], {metric: sorted(users[metric]) for metric in missing}
    # The check itself: a renamed metric is reported, not silently an empty panel.
    assert missing_metrics(prometheus, {"upload_request_total", "gateway_snaps_total"}) == [
        "upload_request_total"
    ]


def test_the_burst_exercised_every_signal(prometheus: Prometheus, burst: dict[str, int]) -> None:
    """The counters behind the non-RED panels moved, so their panels are not blank."""
    moved = {
        "upload rejected by code": 'upload_requests_total{outcome="rejected", '
        'code="unsupported_media_type"}',
        "rate limited": 'gateway_rate_limited_total{limit="default"}',
        "cors rejected": "gateway_cors_rejected_total",
        "redis fallback": "gateway_rate_limit_store_errors_total",
        "upstream error": 'gateway_upstream_errors_total{upstream="ai"}',
        "gemini server errors": "gen_ai_client_operation_duration_seconds_count"
        '{outcome="server_error"}',
        "retries": "ai_upstream_retries_total",
        "blocked": "ai_content_blocked_total",
        "cache hit": 'ai_cache_requests_total{result="hit"}',
        "idempotent replay": "gateway_idempotent_replays_total",
        "input tokens": 'gen_ai_client_token_usage_total{type="input"}',
        "thinking tokens": 'gen_ai_client_token_usage_total{type="thinking"}',
        "snaps succeeded": 'gateway_snaps_total{stage="succeeded"}',
    }
    still = [
        name for name, series in moved.items() if not (prometheus.value(f"sum({series})") or 0)
    ]
    assert still == []
