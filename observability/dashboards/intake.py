"""IdeaSnap / Intake: what comes in through upload-svc and what storage does with it.

Rejections are split by their error code (the same code the client received), so a
new app build that sends HEIC, or a camera that makes bigger photos, shows up as one
line rising. Processing is timed per stage and storage per backend and operation,
because a slow bucket and a slow thumbnail look the same from the outside.
"""

from __future__ import annotations

from observability.dashboards.layout import DashboardSpec, Row
from observability.dashboards.panels import (
    UPLOAD,
    Query,
    label_variable,
    stat_panel,
    timeseries_panel,
    trace_search_link,
)

SEL = f'namespace=~"$namespace", job="{UPLOAD}"'
STORAGE_SEL = f'{SEL}, backend=~"$backend"'
RATE = "$__rate_interval"
STORAGE = "storage_operation_duration_seconds"


def uploads_row() -> Row:
    return Row(
        "Uploads",
        [
            timeseries_panel(
                "Uploads per second by outcome",
                "Upload attempts accepted or rejected by upload-svc.",
                [
                    Query(
                        f"sum by (outcome) (rate(upload_requests_total{{{SEL}}}[{RATE}]))",
                        "{{outcome}}",
                    )
                ],
                unit="reqps",
                span=8,
                stacked=True,
            ),
            timeseries_panel(
                "Rejections per second by code",
                "Why uploads were refused, by the error code the client got "
                "(unsupported_media_type, payload_too_large, image_too_large, invalid_image).",
                [
                    Query(
                        f'sum by (code) (rate(upload_requests_total{{{SEL}, outcome="rejected"}}'
                        f"[{RATE}]))",
                        "{{code}}",
                    )
                ],
                unit="reqps",
                span=8,
                stacked=True,
            ),
            stat_panel(
                "Accepted share in the time range",
                "Uploads accepted, of all upload attempts.",
                [
                    Query(
                        f'sum(increase(upload_requests_total{{{SEL}, outcome="accepted"}}'
                        f"[$__range])) / sum(increase(upload_requests_total{{{SEL}}}[$__range]))"
                    )
                ],
                unit="percentunit",
                span=8,
                height=8,
                decimals=1,
                thresholds=[(None, "orange"), (0.9, "green")],
            ),
        ],
    )


def bytes_row() -> Row:
    return Row(
        "Bytes and processing",
        [
            timeseries_panel(
                "Bytes received per second",
                "Upload bodies read by upload-svc, accepted or not.",
                [
                    Query(
                        f"sum(rate(upload_received_bytes_sum{{{SEL}}}[{RATE}]))",
                        "received",
                    )
                ],
                unit="Bps",
                span=8,
            ),
            timeseries_panel(
                "Upload size percentiles",
                "Size of each upload attempt: a rising p95 means bigger photos (and more "
                "storage, memory and time per upload).",
                [
                    Query(
                        f"histogram_quantile({q}, sum by (le) "
                        f"(rate(upload_received_bytes_bucket{{{SEL}}}[{RATE}])))",
                        f"p{round(q * 100)}",
                    )
                    for q in (0.5, 0.95)
                ],
                unit="bytes",
                span=8,
            ),
            timeseries_panel(
                "Processing time p95 by stage",
                "intake (validate, strip metadata), thumbnail, preview. Click a point "
                "for upload-svc traces at least as slow.",
                [
                    Query(
                        f"histogram_quantile(0.95, sum by (stage, le) "
                        f"(rate(upload_processing_duration_seconds_bucket{{{SEL}}}[{RATE}])))",
                        "{{stage}}",
                    )
                ],
                unit="s",
                span=8,
                links=[trace_search_link(UPLOAD)],
            ),
        ],
    )


def storage_row() -> Row:
    return Row(
        "Storage",
        [
            timeseries_panel(
                "Storage latency p95 by backend and operation",
                "Local disk or the S3-compatible bucket, per operation. Click a point for "
                "upload-svc traces at least as slow.",
                [
                    Query(
                        f"histogram_quantile(0.95, sum by (backend, operation, le) "
                        f"(rate({STORAGE}_bucket{{{STORAGE_SEL}}}[{RATE}])))",
                        "{{backend}} {{operation}}",
                    )
                ],
                unit="s",
                span=8,
                links=[trace_search_link(UPLOAD)],
            ),
            timeseries_panel(
                "Storage operations per second",
                "By backend, operation and outcome.",
                [
                    Query(
                        f"sum by (backend, operation, outcome) "
                        f"(rate({STORAGE}_count{{{STORAGE_SEL}}}[{RATE}]))",
                        "{{backend}} {{operation}} {{outcome}}",
                    )
                ],
                unit="ops",
                span=8,
            ),
            timeseries_panel(
                "Storage error ratio by backend",
                "Failed storage operations over all. The IdeaSnapStorageErrors alert watches this.",
                [
                    Query(
                        f"(sum by (backend) (rate({STORAGE}_count{{{STORAGE_SEL}, "
                        f'outcome="error"}}[{RATE}])) or 0 * sum by (backend) '
                        f"(rate({STORAGE}_count{{{STORAGE_SEL}}}[{RATE}])))"
                        f" / sum by (backend) (rate({STORAGE}_count{{{STORAGE_SEL}}}[{RATE}]))",
                        "{{backend}}",
                    )
                ],
                unit="percentunit",
                span=8,
                thresholds=[(None, "green"), (0.01, "orange"), (0.05, "red")],
            ),
        ],
    )


def spec() -> DashboardSpec:
    return DashboardSpec(
        uid="ideasnap-intake",
        title="IdeaSnap / Intake",
        description="Uploads by outcome and rejection code, bytes, processing and storage.",
        variables=[label_variable("backend", "Storage backend", f"{STORAGE}_count", "backend")],
        rows=[uploads_row(), bytes_row(), storage_row()],
    )
