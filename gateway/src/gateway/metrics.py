"""The gateway's own metrics (names fixed by the metrics contract; dashboards rely on them).

Defined once per process, like the chassis' RED metrics, so every gunicorn worker
writes to its own multiprocess file and the master adds them up on the metrics port.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
SNAP_RECORDS = Counter(
    "gateway_snap_records_total",
    "Signed-in snaps recorded in library-svc's history (recorded), or answered without "
    "being recorded because library-svc could not take them (failed).",
    ["outcome"],
)
IDEMPOTENT_REPLAYS = Counter(
    "gateway_idempotent_replays_total",
    "POSTs answered from the idempotency store instead of being run again.",
)
STREAMS = Counter(
    "gateway_streams_total",
    "Event-stream answers, by route and how they ended (done, error, client_gone, "
    "upstream_broken).",
    ["route", "outcome"],
)
STREAMS_OPEN = Gauge(
    "gateway_streams_open",
    "Event-stream answers being relayed right now (each holds one worker thread).",
    multiprocess_mode="livesum",
)
# Seconds, as a person waiting on a phone sees them: from the request's arrival.
ANSWER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 20.0, 30.0)
TIME_TO_FIRST_IDEA = Histogram(
    "gateway_time_to_first_idea_seconds",
    "Streamed answers: from the request's arrival to the first idea relayed, by route.",
    ["route"],
    buckets=ANSWER_BUCKETS,
)
TIME_TO_WHOLE_ANSWER = Histogram(
    "gateway_stream_duration_seconds",
    "Streamed answers: from the request's arrival to the stream's end, by route and outcome.",
    ["route", "outcome"],
    buckets=ANSWER_BUCKETS,
)

WEB_REQUESTS = Histogram(
    "gateway_web_request_duration_seconds",
    "The web app, its assets and the public pages (kept out of the API's RED metrics), "
    "by route template and status.",
    ["route", "status"],
    buckets=LATENCY_BUCKETS,
)

LIMIT_LABELS = ("default", "ai", "quota")
STREAM_ROUTES = ("/v1/snaps", "/v1/ideas")
STREAM_OUTCOMES = ("done", "error", "client_gone", "upstream_broken")
SNAP_STAGES = ("received", "stored", "succeeded")
SNAP_RECORD_OUTCOMES = ("recorded", "failed")


def touch_series() -> None:
    """Create the labelled series at zero, so a rate() over them exists before any event."""
    for label in LIMIT_LABELS:
        RATE_LIMITED.labels(label)
    for stage in SNAP_STAGES:
        SNAPS.labels(stage)
    for outcome in SNAP_RECORD_OUTCOMES:
        SNAP_RECORDS.labels(outcome)
    for route in STREAM_ROUTES:
        TIME_TO_FIRST_IDEA.labels(route)
        for outcome in STREAM_OUTCOMES:
            STREAMS.labels(route, outcome)
            TIME_TO_WHOLE_ANSWER.labels(route, outcome)
