"""IdeaSnap / Library: library-svc's requests, its database pool and account deletions.

library-svc holds what signed-in people keep, on PostgreSQL. Its failures look like the
other services' from the outside (5xx, slow routes), but the cause is usually the
database: a pool with every connection checked out makes requests queue for one, so
the pool's saturation sits next to the latency. Account deletions are resumable and
finished by a sweep; a failure rate or a backlog that does not drain means people who
asked to be deleted still are not, which the stores require.
"""

from __future__ import annotations

from observability.dashboards.layout import DashboardSpec, Row
from observability.dashboards.panels import (
    LIBRARY,
    Query,
    stat_panel,
    timeseries_panel,
    trace_search_link,
)

SEL = f'namespace=~"$namespace", job="{LIBRARY}"'
RATE = "$__rate_interval"
HTTP = "http_server_request_duration_seconds"
POOL = "library_db_pool_connections"
DELETIONS = "library_account_deletions_total"


def requests_row() -> Row:
    return Row(
        "Requests",
        [
            timeseries_panel(
                "Requests per second by route",
                "library-svc's requests (all from the gateway), by method and route.",
                [
                    Query(
                        f"sum by (method, route) (rate({HTTP}_count{{{SEL}}}[{RATE}]))",
                        "{{method}} {{route}}",
                    )
                ],
                unit="reqps",
                span=8,
                stacked=True,
            ),
            timeseries_panel(
                "Error ratio (5xx) by route",
                "Server errors over all requests per route. The IdeaSnapLibraryErrors alert "
                "watches the service as a whole.",
                [
                    Query(
                        f'(sum by (method, route) (rate({HTTP}_count{{{SEL}, status=~"5.."}}'
                        f"[{RATE}])) or 0 * sum by (method, route) (rate({HTTP}_count{{{SEL}}}"
                        f"[{RATE}]))) / sum by (method, route) (rate({HTTP}_count{{{SEL}}}"
                        f"[{RATE}]))",
                        "{{method}} {{route}}",
                    )
                ],
                unit="percentunit",
                span=8,
                thresholds=[(None, "green"), (0.01, "orange"), (0.05, "red")],
            ),
            timeseries_panel(
                "p95 latency by route",
                "History pages, draft saves, the change feed. Click a point for library-svc "
                "traces of the route at least as slow (database calls are spans in them).",
                [
                    Query(
                        f"histogram_quantile(0.95, sum by (method, route, le) "
                        f"(rate({HTTP}_bucket{{{SEL}}}[{RATE}])))",
                        "{{method}} {{route}}",
                    )
                ],
                unit="s",
                span=8,
                links=[trace_search_link(LIBRARY, "${__field.labels.route}")],
            ),
        ],
    )


def pool_row() -> Row:
    return Row(
        "Database pool",
        [
            timeseries_panel(
                "Pool saturation by pod",
                "Connections checked out over the pool size, per pod. At 1 requests wait "
                "for a connection; the IdeaSnapLibraryDatabasePoolSaturated alert fires at 0.9.",
                [
                    Query(
                        f'sum by (pod) ({POOL}{{{SEL}, state="checked_out"}})'
                        f" / sum by (pod) (library_db_pool_size{{{SEL}}})",
                        "{{pod}}",
                    )
                ],
                unit="percentunit",
                span=8,
                thresholds=[(None, "green"), (0.75, "orange"), (0.9, "red")],
                soft_max=1,
            ),
            timeseries_panel(
                "Connections by state",
                "checked_out (in use by a request), idle (open, waiting in the pool) and "
                "overflow (opened beyond the pool size), summed over the pods.",
                [
                    Query(
                        f"sum by (state) ({POOL}{{{SEL}}})",
                        "{{state}}",
                    ),
                    Query(f"sum(library_db_pool_size{{{SEL}}})", "pool size"),
                ],
                unit="short",
                span=8,
            ),
            timeseries_panel(
                "Overflow connections by pod",
                "Connections above the pool size: a pod that keeps overflowing needs more "
                "threads' worth of pool, or fewer slow queries.",
                [
                    Query(
                        f'sum by (pod) ({POOL}{{{SEL}, state="overflow"}})',
                        "{{pod}}",
                    )
                ],
                unit="short",
                span=8,
            ),
        ],
    )


def deletions_row() -> Row:
    return Row(
        "Account deletions",
        [
            timeseries_panel(
                "Account deletions per second by outcome",
                "completed: everything of the person is gone; failed: a step failed and the "
                "deletion record waits for a retry or the sweep.",
                [
                    Query(
                        f"sum by (outcome) (rate({DELETIONS}{{{SEL}}}[{RATE}]))",
                        "{{outcome}}",
                    )
                ],
                unit="ops",
                span=8,
                stacked=True,
            ),
            timeseries_panel(
                "Deletions waiting to finish",
                "Accounts whose deletion began and has not completed. It should drain; the "
                "IdeaSnapAccountDeletionsPending alert fires when it does not.",
                [Query(f"max(library_account_deletions_pending{{{SEL}}})", "pending")],
                unit="short",
                span=8,
            ),
            stat_panel(
                "Failed deletion attempts in the time range",
                "Attempts that stopped half way (each is retried). The "
                "IdeaSnapAccountDeletionsFailing alert fires on repeated failures.",
                [
                    Query(
                        f'sum(increase({DELETIONS}{{{SEL}, outcome="failed"}}[$__range]))',
                    )
                ],
                unit="short",
                span=8,
                height=8,
                decimals=0,
                thresholds=[(None, "green"), (1, "orange"), (3, "red")],
            ),
        ],
    )


def spec() -> DashboardSpec:
    return DashboardSpec(
        uid="ideasnap-library",
        title="IdeaSnap / Library",
        description="library-svc: requests, errors and latency, database pool, account deletions.",
        variables=[],
        rows=[requests_row(), pool_row(), deletions_row()],
    )
