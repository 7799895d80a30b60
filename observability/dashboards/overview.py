"""IdeaSnap / Overview: is it serving, how fast, how full, and do snaps succeed.

The first rows are RED per service and per route from the chassis histogram every
service exposes under the same name, so one query covers all three. Saturation compares
what a pod is doing with what it can do (in-flight requests against its worker threads,
replicas against the HPA's maximum), because the services scale on saturation, not CPU.
The funnel follows one snap from upload to ideas; next to it, for streamed answers, the
time to the first idea against the time to the whole answer.
"""

from __future__ import annotations

from observability.dashboards.layout import DashboardSpec, Row
from observability.dashboards.panels import (
    SERVICES_REGEX,
    Query,
    bar_gauge_panel,
    label_variable,
    stat_panel,
    timeseries_panel,
    trace_search_link,
)

HTTP = "http_server_request_duration_seconds"
SEL = 'namespace=~"$namespace", job=~"$job"'
RATE = "$__rate_interval"
# Kubernetes objects of the chart carry the service's name (ideasnap-gateway, ...).
POD = 'namespace=~"$namespace", pod=~".*-($job)-.*"'
HPA = 'namespace=~"$namespace", horizontalpodautoscaler=~".*-?($job)"'
FUNNEL = 'namespace=~"$namespace", job="gateway"'


def _requests(by: str, extra: str = "") -> str:
    return f"sum by ({by}) (rate({HTTP}_count{{{SEL}{extra}}}[{RATE}]))"


def _error_ratio(by: str, status_regex: str) -> str:
    """Errors over all requests, and 0 (not "no data") when a service has no errors."""
    errors = _requests(by, f', status=~"{status_regex}"')
    total = _requests(by)
    return f"({errors} or 0 * {total}) / {total}"


def _quantile(q: float, by: str) -> str:
    return f"histogram_quantile({q}, sum by ({by}, le) (rate({HTTP}_bucket{{{SEL}}}[{RATE}])))"


def red_rows() -> list[Row]:
    per_service = Row(
        "Traffic, errors and latency (RED) per service",
        [
            timeseries_panel(
                "Requests per second",
                "Requests each service answered, all routes and statuses.",
                [Query(_requests("job"), "{{job}}")],
                unit="reqps",
                span=8,
            ),
            timeseries_panel(
                "Error ratio (5xx)",
                "Share of each service's responses that were server errors (5xx). "
                "The availability SLO of POST /v1/snaps counts these.",
                [Query(_error_ratio("job", "5.."), "{{job}}")],
                unit="percentunit",
                span=8,
                thresholds=[(None, "green"), (0.005, "orange"), (0.05, "red")],
            ),
            timeseries_panel(
                "Client errors (4xx) by status",
                "Requests refused: rejected uploads (415/413/422), rate limits (429), "
                "unknown ids (404). A rise means clients, not the services, changed.",
                [
                    Query(
                        _requests("job, status", ', status=~"4.."'),
                        "{{job}} {{status}}",
                    )
                ],
                unit="reqps",
                span=8,
            ),
            timeseries_panel(
                "Latency percentiles per service",
                "p50, p95 and p99 of request duration. Click a point for the traces of "
                "that service at least as slow (the services export no exemplars).",
                [
                    Query(_quantile(0.5, "job"), "{{job}} p50"),
                    Query(_quantile(0.95, "job"), "{{job}} p95"),
                    Query(_quantile(0.99, "job"), "{{job}} p99"),
                ],
                unit="s",
                span=24,
                links=[trace_search_link("${__field.labels.job}")],
            ),
        ],
    )
    per_route = Row(
        "Traffic, errors and latency (RED) per route",
        [
            timeseries_panel(
                "Requests per second by route",
                "Route templates, never raw paths: ids do not make new series.",
                [Query(_requests("job, method, route"), "{{job}} {{method}} {{route}}")],
                unit="reqps",
                span=8,
            ),
            timeseries_panel(
                "Error ratio (5xx) by route",
                "Share of each route's responses that were server errors.",
                [
                    Query(
                        _error_ratio("job, method, route", "5.."),
                        "{{job}} {{method}} {{route}}",
                    )
                ],
                unit="percentunit",
                span=8,
            ),
            timeseries_panel(
                "p95 latency by route",
                "Click a point for the traces of that service and route at least as slow.",
                [
                    Query(
                        _quantile(0.95, "job, method, route"),
                        "{{job}} {{method}} {{route}}",
                    )
                ],
                unit="s",
                span=8,
                links=[trace_search_link("${__field.labels.job}", "${__field.labels.route}")],
            ),
        ],
    )
    return [per_service, per_route]


def saturation_row() -> Row:
    return Row(
        "Saturation",
        [
            timeseries_panel(
                "In-flight requests vs capacity per pod",
                "Requests being served against the pod's request threads (workers × "
                "threads). Near 100% the pod queues; the HPA should add pods before.",
                [
                    Query(
                        f"sum by (job, instance) (http_server_active_requests{{{SEL}}})"
                        f" / sum by (job, instance) (http_server_worker_threads{{{SEL}}})",
                        "{{job}} {{instance}}",
                    )
                ],
                unit="percentunit",
                span=12,
                soft_max=1,
                thresholds=[(None, "green"), (0.7, "orange"), (0.9, "red")],
            ),
            timeseries_panel(
                "In-flight requests and capacity per pod",
                "The same as absolute numbers: busy threads, and how many the pod has.",
                [
                    Query(
                        f"sum by (job, instance) (http_server_active_requests{{{SEL}}})",
                        "{{job}} {{instance}} in flight",
                    ),
                    Query(
                        f"sum by (job, instance) (http_server_worker_threads{{{SEL}}})",
                        "{{job}} {{instance}} capacity",
                    ),
                ],
                unit="short",
                span=12,
            ),
            timeseries_panel(
                "Replicas vs HPA limits",
                "Current replicas against the autoscaler's minimum and maximum "
                "(kube-state-metrics). Flat at the maximum means the HPA cannot add more.",
                [
                    Query(
                        f"max by (horizontalpodautoscaler) "
                        f"(kube_horizontalpodautoscaler_status_current_replicas{{{HPA}}})",
                        "{{horizontalpodautoscaler}} current",
                    ),
                    Query(
                        f"max by (horizontalpodautoscaler) "
                        f"(kube_horizontalpodautoscaler_status_desired_replicas{{{HPA}}})",
                        "{{horizontalpodautoscaler}} desired",
                    ),
                    Query(
                        f"max by (horizontalpodautoscaler) "
                        f"(kube_horizontalpodautoscaler_spec_max_replicas{{{HPA}}})",
                        "{{horizontalpodautoscaler}} max",
                    ),
                    Query(
                        f"max by (horizontalpodautoscaler) "
                        f"(kube_horizontalpodautoscaler_spec_min_replicas{{{HPA}}})",
                        "{{horizontalpodautoscaler}} min",
                    ),
                ],
                unit="short",
                span=12,
            ),
            timeseries_panel(
                "Container restarts",
                "Restarts per pod (kube-state-metrics): crash loops, OOM kills, failed probes.",
                [
                    Query(
                        f"sum by (pod) (increase(kube_pod_container_status_restarts_total"
                        f"{{{POD}}}[{RATE}]))",
                        "{{pod}}",
                    )
                ],
                unit="short",
                span=12,
            ),
            timeseries_panel(
                "Pods per release",
                "Pods of each service by the release they run: two lines at once is a "
                "rollout in progress (or stuck).",
                [
                    Query(
                        "count by (job, release) (count by (job, instance, release) "
                        f"(ideasnap_service_info{{{SEL}}}))",
                        "{{job}} {{release}}",
                    )
                ],
                unit="short",
                span=24,
                height=6,
            ),
        ],
    )


def funnel_row() -> Row:
    stages = ("received", "stored", "succeeded")
    return Row(
        "Snap funnel",
        [
            bar_gauge_panel(
                "Snaps in the time range: received → stored → succeeded",
                "Every POST /v1/snaps is received; stored once upload-svc kept the image; "
                "succeeded once ai-svc returned ideas. Drops show where snaps are lost.",
                [
                    Query(
                        f'sum(increase(gateway_snaps_total{{{FUNNEL}, stage="{stage}"}}'
                        f"[$__range]))",
                        stage,
                    )
                    for stage in stages
                ],
                unit="short",
                span=10,
            ),
            stat_panel(
                "Snap success ratio",
                "Snaps that returned ideas, of the snaps received, in the time range.",
                [
                    Query(
                        f'sum(increase(gateway_snaps_total{{{FUNNEL}, stage="succeeded"}}'
                        f"[$__range])) / sum(increase(gateway_snaps_total"
                        f'{{{FUNNEL}, stage="received"}}[$__range]))'
                    )
                ],
                unit="percentunit",
                span=4,
                height=8,
                thresholds=[(None, "red"), (0.95, "orange"), (0.99, "green")],
                decimals=1,
            ),
            timeseries_panel(
                "Snaps per second by stage",
                "The funnel over time.",
                [
                    Query(
                        f"sum by (stage) (rate(gateway_snaps_total{{{FUNNEL}}}[{RATE}]))",
                        "{{stage}}",
                    )
                ],
                unit="reqps",
                span=10,
            ),
        ],
    )


def _stream_quantile(q: float, metric: str, extra: str = "") -> str:
    return (
        f"histogram_quantile({q}, sum by (route, le) "
        f"(rate({metric}_bucket{{{FUNNEL}{extra}}}[{RATE}])))"
    )


def streaming_row() -> Row:
    first, whole = "gateway_time_to_first_idea_seconds", "gateway_stream_duration_seconds"
    done = ', outcome="done"'
    return Row(
        "Streamed ideas: first idea and whole answer",
        [
            timeseries_panel(
                "Time to first idea vs whole answer (p50, p99)",
                "Accept: text/event-stream answers, from the request's arrival at the "
                "gateway: to the first idea relayed, and to the done event. The gap is "
                "what streaming saves a person waiting.",
                [
                    Query(_stream_quantile(0.5, first), "first idea p50 {{route}}"),
                    Query(_stream_quantile(0.99, first), "first idea p99 {{route}}"),
                    Query(_stream_quantile(0.5, whole, done), "whole answer p50 {{route}}"),
                    Query(_stream_quantile(0.99, whole, done), "whole answer p99 {{route}}"),
                ],
                unit="s",
                span=16,
                links=[trace_search_link("gateway", "${__field.labels.route}")],
            ),
            timeseries_panel(
                "Streams by outcome",
                "How event streams ended: done, error (an error event), client_gone "
                "(the client left; the model call was stopped), upstream_broken.",
                [
                    Query(
                        f"sum by (outcome) (rate(gateway_streams_total{{{FUNNEL}}}[{RATE}]))",
                        "{{outcome}}",
                    )
                ],
                unit="reqps",
                span=8,
            ),
        ],
    )


def spec() -> DashboardSpec:
    return DashboardSpec(
        uid="ideasnap-overview",
        title="IdeaSnap / Overview",
        description="RED per service and route, saturation, the snap funnel and streamed "
        "ideas (time to first idea vs the whole answer).",
        variables=[
            label_variable(
                "job",
                "Service",
                "ideasnap_service_info",
                "job",
                all_value=SERVICES_REGEX,
            )
        ],
        rows=[*red_rows(), saturation_row(), funnel_row(), streaming_row()],
    )
