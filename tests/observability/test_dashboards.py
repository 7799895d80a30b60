"""The dashboards as code: current in the chart, complete, and well-formed for Grafana."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from grafana_foundation_sdk.models.dashboard import Dashboard as GrafanaDashboard

from observability.dashboards import CHART_DASHBOARDS, model, render, specs
from observability.dashboards.__main__ import main as generate
from observability.inventory import (
    interpolate,
    metric_names,
    panel_queries,
    variable_values,
)

# The metrics contract (names every part of the system relies on). Each one must be on
# at least one dashboard, or an operator has no way to see it.
CONTRACT_METRICS = {
    "http_server_request_duration_seconds",
    "http_server_active_requests",
    "http_server_worker_threads",
    "ideasnap_service_info",
    "upload_requests_total",
    "upload_received_bytes",
    "upload_processing_duration_seconds",
    "storage_operation_duration_seconds",
    "gen_ai_client_operation_duration_seconds",
    "gen_ai_client_token_usage_total",
    "ai_upstream_retries_total",
    "ai_circuit_state",
    "ai_cache_requests_total",
    "ai_upstream_in_flight",
    "ai_ideas_total",
    "ai_content_blocked_total",
    "gateway_rate_limited_total",
    "gateway_cors_rejected_total",
    "gateway_rate_limit_store_errors_total",
    "gateway_upstream_errors_total",
    "gateway_snaps_total",
    "gateway_idempotent_replays_total",
    "library_db_pool_connections",
    "library_db_pool_size",
    "library_account_deletions_total",
    "library_account_deletions_pending",
}
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def base_name(metric: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if metric.endswith(suffix):
            return metric.removesuffix(suffix)
    return metric


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    return {spec.uid: model(spec) for spec in specs()}


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def test_the_chart_holds_exactly_what_the_code_generates() -> None:
    files = render()
    on_disk = {path.name: path.read_text() for path in CHART_DASHBOARDS.glob("*.json")}
    assert on_disk == files, "dashboards in the chart are stale: run make dashboards"
    assert generate(["--check"]) == 0


def test_check_mode_reports_a_hand_edited_dashboard(tmp_path: Any) -> None:
    assert generate(["--out", str(tmp_path)]) == 0
    edited = tmp_path / "ideasnap-edge.json"
    edited.write_text(edited.read_text().replace("Rate-limited", "Rate limited"))
    assert generate(["--out", str(tmp_path), "--check"]) == 1
    (tmp_path / "by-hand.json").write_text("{}")
    assert generate(["--out", str(tmp_path)]) == 0
    assert not (tmp_path / "by-hand.json").exists()
    assert generate(["--out", str(tmp_path), "--check"]) == 0


def test_the_five_views_exist_with_their_rows(dashboards: dict[str, dict[str, Any]]) -> None:
    rows = {
        uid: [panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"]
        for uid, dashboard in dashboards.items()
    }
    assert rows == {
        "ideasnap-overview": [
            "Traffic, errors and latency (RED) per service",
            "Traffic, errors and latency (RED) per route",
            "Saturation",
            "Snap funnel",
            "Streamed ideas: first idea and whole answer",
        ],
        "ideasnap-ai": [
            "Gemini calls",
            "Resilience",
            "Tokens and cost",
            "Ideas and blocked content",
        ],
        "ideasnap-intake": ["Uploads", "Bytes and processing", "Storage"],
        "ideasnap-edge": ["Rate limits and quotas", "CORS, rate-limit store and upstreams"],
        "ideasnap-library": ["Requests", "Database pool", "Account deletions"],
    }
    assert len({dashboard["title"] for dashboard in dashboards.values()}) == 5


def test_every_contract_metric_is_on_a_dashboard(dashboards: dict[str, dict[str, Any]]) -> None:
    shown: set[str] = set()
    for dashboard in dashboards.values():
        values = variable_values(dashboard)
        for query in panel_queries(dashboard):
            shown |= {base_name(name) for name in metric_names(interpolate(query.expr, values))}
    assert CONTRACT_METRICS - shown == set()


def test_panels_are_well_formed(dashboards: dict[str, dict[str, Any]]) -> None:
    for dashboard in dashboards.values():
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), dashboard["uid"]
        for panel in all_panels(dashboard):
            where = f"{dashboard['uid']} / {panel['title']}"
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
            assert panel["description"], where
            assert panel["fieldConfig"]["defaults"].get("unit") or panel["type"] == (
                "state-timeline"
            ), where
            ref_ids = [target["refId"] for target in panel["targets"]]
            assert ref_ids, where
            assert len(ref_ids) == len(set(ref_ids)), where
            assert all(
                target["datasource"]["uid"] == "${datasource}" for target in panel["targets"]
            )
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, where


def test_every_query_uses_only_known_variables(dashboards: dict[str, dict[str, Any]]) -> None:
    for dashboard in dashboards.values():
        values = variable_values(dashboard)
        for query in panel_queries(dashboard):
            expanded = interpolate(query.expr, values)
            assert "$" not in expanded, query.name
            assert expanded.count("(") == expanded.count(")"), query.name


def test_queries_select_by_namespace_and_the_service_job(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    """The label convention: ``job`` is the service's name, ``namespace`` the release's."""
    for dashboard in dashboards.values():
        for query in panel_queries(dashboard):
            for selector in re.findall(r"(\w+)\{([^}]*)\}", query.expr):
                name, matchers = selector
                assert 'namespace=~"$namespace"' in matchers, (query.name, name)
                if not name.startswith("kube_"):
                    assert re.search(
                        r'job(=~"\$job"|="(gateway|upload-svc|ai-svc|library-svc)")', matchers
                    ), (
                        query.name,
                        name,
                    )


def trace_links(panel: dict[str, Any]) -> list[dict[str, Any]]:
    return panel["fieldConfig"]["defaults"].get("links", [])


def test_latency_panels_link_to_a_trace_search(dashboards: dict[str, dict[str, Any]]) -> None:
    latency_panels = [
        panel
        for dashboard in dashboards.values()
        for panel in all_panels(dashboard)
        if panel["fieldConfig"]["defaults"].get("unit") == "s"
        and any("histogram_quantile" in target["expr"] for target in panel["targets"])
    ]
    assert len(latency_panels) >= 5
    for panel in latency_panels:
        links = trace_links(panel)
        assert len(links) == 1, panel["title"]
        url = urlsplit(links[0]["url"])
        assert url.path == "/explore"
        pane = json.loads(parse_qs(url.query)["panes"][0])["traces"]
        query = pane["queries"][0]
        assert pane["datasource"] == "${tempo}"
        assert query["datasource"] == {"type": "tempo", "uid": "${tempo}"}
        assert query["queryType"] == "traceql"
        assert "resource.service.name = " in query["query"]
        assert "duration >= ${__value.raw}s" in query["query"]
        assert pane["range"] == {"from": "${__from}", "to": "${__to}"}
        grouped_by_route = any("route" in target["expr"] for target in panel["targets"])
        assert ('span.http.route = "${__field.labels.route}"' in query["query"]) == (
            grouped_by_route
        ), panel["title"]


def test_route_latency_link_survives_a_query_string_parser(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    """TraceQL's ``&&`` must not split the URL's query string into bogus parameters."""
    panel = next(
        panel
        for panel in all_panels(dashboards["ideasnap-overview"])
        if panel["title"] == "p95 latency by route"
    )
    query = parse_qs(urlsplit(trace_links(panel)[0]["url"]).query)
    assert set(query) == {"schemaVersion", "panes"}
    traceql = json.loads(query["panes"][0])["traces"]["queries"][0]["query"]
    assert traceql == (
        '{ resource.service.name = "${__field.labels.job}" && '
        'span.http.route = "${__field.labels.route}" && duration >= ${__value.raw}s }'
    )


def test_estimated_cost_uses_the_price_variables(dashboards: dict[str, dict[str, Any]]) -> None:
    ai = dashboards["ideasnap-ai"]
    values = variable_values(ai)
    assert float(values["price_input"]) > 0
    assert float(values["price_output"]) > float(values["price_input"])
    cost = [query for query in panel_queries(ai) if "cost" in query.panel.lower()]
    assert len(cost) == 2
    for query in cost:
        assert "$price_input" in query.expr
        assert "$price_output" in query.expr
        assert 'type=~"output|thinking"' in query.expr


def test_variables_default_to_everything_of_ideasnap(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    overview = variable_values(dashboards["ideasnap-overview"])
    assert overview == {"namespace": ".*", "job": "gateway|upload-svc|ai-svc|library-svc"}
    for dashboard in dashboards.values():
        names = [variable["name"] for variable in dashboard["templating"]["list"]]
        assert names[:3] == ["datasource", "tempo", "namespace"]


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        (
            'sum by (job, le) (rate(http_server_request_duration_seconds_bucket{job="a"}[5m]))',
            {"http_server_request_duration_seconds_bucket"},
        ),
        (
            "(sum(rate(a_total[1m])) or vector(0)) * 0.30 / 1e6 + b_total offset 5m",
            {"a_total", "b_total"},
        ),
        (
            'x / on (namespace) group_left sum without (pod) (y{l="by (z)"}) > bool 2',
            {"x", "y"},
        ),
        (
            "ideasnap:snaps_latency_slow:ratio_rate5m > (14.4 * (1 - 0.95))",
            {"ideasnap:snaps_latency_slow:ratio_rate5m"},
        ),
        ("histogram_quantile(0.95, sum(rate(h_bucket[$__rate_interval])) by (le))", {"h_bucket"}),
    ],
)
def test_metric_names_finds_the_series_an_expression_reads(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_interpolate_refuses_an_unknown_variable() -> None:
    assert interpolate("rate(x[$__rate_interval]) * ${price}", {"price": "2"}) == (
        "rate(x[1m]) * 2"
    )
    with pytest.raises(KeyError, match="missing"):
        interpolate("x{a=~'$missing'}", {})


def test_the_files_read_back_into_grafanas_dashboard_model() -> None:
    """Each shipped file parses as the SDK's typed Grafana dashboard, panel for panel."""
    for path in sorted(CHART_DASHBOARDS.glob("*.json")):
        raw = json.loads(path.read_text())
        parsed = GrafanaDashboard.from_json(raw)
        assert parsed.uid == raw["uid"]
        assert [panel.title for panel in parsed.panels or []] == [
            panel["title"] for panel in raw["panels"]
        ]
        assert len(parsed.templating.list_val or []) == len(raw["templating"]["list"])
