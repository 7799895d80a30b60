"""IdeaSnap / Edge: what the gateway refused, and whether its limits still hold.

The gateway is where clients meet IdeaSnap's limits: per-client rate limits, the AI
limit, daily quotas and the CORS allow-list. A storm of 429s is either abuse or a
limit set too tight; Redis being unreachable means the limits silently stop being
shared between replicas. Both need to be visible before users report them.
"""

from __future__ import annotations

from observability.dashboards.layout import DashboardSpec, Row
from observability.dashboards.panels import (
    GATEWAY,
    Query,
    stat_panel,
    timeseries_panel,
)

SEL = f'namespace=~"$namespace", job="{GATEWAY}"'
RATE = "$__rate_interval"
HTTP = "http_server_request_duration_seconds"


def limits_row() -> Row:
    return Row(
        "Rate limits and quotas",
        [
            timeseries_panel(
                "Rate-limited requests per second by limit",
                "Requests answered 429: default (per client), ai (idea calls), quota "
                "(a client's daily allowance used up).",
                [
                    Query(
                        f"sum by (limit) (rate(gateway_rate_limited_total{{{SEL}}}[{RATE}]))",
                        "{{limit}}",
                    )
                ],
                unit="reqps",
                span=8,
                stacked=True,
            ),
            timeseries_panel(
                "Share of requests rate-limited",
                "429s by limit over all gateway requests. The IdeaSnapRateLimitStorm "
                "alert watches this.",
                [
                    Query(
                        f"sum by (limit) (rate(gateway_rate_limited_total{{{SEL}}}[{RATE}]))"
                        f" / scalar(sum(rate({HTTP}_count{{{SEL}}}[{RATE}])))",
                        "{{limit}}",
                    )
                ],
                unit="percentunit",
                span=8,
                thresholds=[(None, "green"), (0.05, "orange"), (0.1, "red")],
            ),
            stat_panel(
                "Quota exhaustion in the time range",
                "Requests refused because a client's quota was used up.",
                [
                    Query(
                        f'sum(increase(gateway_rate_limited_total{{{SEL}, limit="quota"}}'
                        f"[$__range])) or vector(0)"
                    )
                ],
                unit="short",
                span=8,
                height=8,
                decimals=0,
            ),
        ],
    )


def guards_row() -> Row:
    return Row(
        "CORS, rate-limit store and upstreams",
        [
            timeseries_panel(
                "CORS rejections per second",
                "Requests from an Origin not on the allow-list (a misconfigured web "
                "client, or someone else's page calling the API).",
                [
                    Query(
                        f"sum(rate(gateway_cors_rejected_total{{{SEL}}}[{RATE}]))",
                        "rejected",
                    )
                ],
                unit="reqps",
                span=8,
            ),
            timeseries_panel(
                "Rate-limit store errors (Redis fallback)",
                "Limit checks that could not reach Redis and fell back to per-replica "
                "memory: limits are then counted per pod, not together.",
                [
                    Query(
                        f"sum(rate(gateway_rate_limit_store_errors_total{{{SEL}}}[{RATE}]))",
                        "fallbacks",
                    )
                ],
                unit="reqps",
                span=8,
                thresholds=[(None, "green"), (0.000001, "red")],
            ),
            timeseries_panel(
                "Upstream errors by service and code",
                "Failures of upload-svc or ai-svc as the gateway saw them "
                "(upstream_unavailable, upstream_timeout, ...).",
                [
                    Query(
                        f"sum by (upstream, code) (rate(gateway_upstream_errors_total"
                        f"{{{SEL}}}[{RATE}]))",
                        "{{upstream}} {{code}}",
                    )
                ],
                unit="reqps",
                span=8,
                stacked=True,
            ),
            timeseries_panel(
                "Idempotent replays per second",
                "Retried requests answered from the stored first answer (same "
                "Idempotency-Key), not processed twice.",
                [
                    Query(
                        f"sum(rate(gateway_idempotent_replays_total{{{SEL}}}[{RATE}]))",
                        "replays",
                    )
                ],
                unit="reqps",
                span=12,
            ),
            timeseries_panel(
                "429 responses by route",
                "Where clients hit the limits.",
                [
                    Query(
                        f'sum by (method, route) (rate({HTTP}_count{{{SEL}, status="429"}}'
                        f"[{RATE}]))",
                        "{{method}} {{route}}",
                    )
                ],
                unit="reqps",
                span=12,
            ),
        ],
    )


def spec() -> DashboardSpec:
    return DashboardSpec(
        uid="ideasnap-edge",
        title="IdeaSnap / Edge",
        description="Rate limits, quotas, CORS rejections, Redis fallback, upstream errors.",
        rows=[limits_row(), guards_row()],
    )
