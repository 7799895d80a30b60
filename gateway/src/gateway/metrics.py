"""The gateway's own metrics (names fixed by the metrics contract; dashboards rely on them).

Defined once per process, like the chassis' RED metrics, so every gunicorn worker
writes to its own multiprocess file and the master adds them up on the metrics port.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from chassis.metrics import LATENCY_BUCKETS

RATE_LIMITED = Counter(
    "gateway_rate_limited_total",
    "Requests refused with 429, by the limit that was hit.",
    ["limit"],
)
CORS_REJECTED = Counter(
    "gateway_cors_rejected_total",
    "Requests carrying an Origin that is not on the allow-list.",
)
RATE_LIMIT_STORE_ERRORS = Counter(
    "gateway_rate_limit_store_errors_total",
    "Requests decided without the shared rate-limit store (it was unreachable).",
)
UPSTREAM_ERRORS = Counter(
    "gateway_upstream_errors_total",
    "Failed calls to a backing service, by service and error code.",
    ["upstream", "code"],
)
SNAPS = Counter(
    "gateway_snaps_total",
    "POST /v1/snaps funnel: received, stored (upload done), succeeded (ideas returned).",
    ["stage"],
)
IDEMPOTENT_REPLAYS = Counter(
    "gateway_idempotent_replays_total",
    "POSTs answered from the idempotency store instead of being run again.",
)

WEB_REQUESTS = Histogram(
    "gateway_web_request_duration_seconds",
    "The web app, its assets and the public pages (kept out of the API's RED metrics), "
    "by route template and status.",
    ["route", "status"],
    buckets=LATENCY_BUCKETS,
)

LIMIT_LABELS = ("default", "ai", "quota")
SNAP_STAGES = ("received", "stored", "succeeded")


def touch_series() -> None:
    """Create the labelled series at zero, so a rate() over them exists before any event."""
    for label in LIMIT_LABELS:
        RATE_LIMITED.labels(label)
    for stage in SNAP_STAGES:
        SNAPS.labels(stage)
