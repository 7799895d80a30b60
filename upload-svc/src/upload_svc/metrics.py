"""upload-svc's own metrics (the names are a contract with dashboards and alerts).

- ``upload_requests_total{outcome, code}``: every ``POST /v1/uploads``; outcome
  ``accepted`` (code ``none``), ``rejected`` (a 4xx: code is the error code clients see)
  or ``failed`` (a 5xx: the service or its storage failed, not the file).
- ``upload_received_bytes``: the body size of each upload attempt.
- ``upload_processing_duration_seconds{stage}``: CPU-side work per image; ``intake``
  (sniff, verify, decode, strip or re-encode), ``thumbnail`` and ``preview`` (one
  rendition each, at upload or on first use).
- ``storage_operation_duration_seconds{backend, operation, outcome}``: every storage
  call; a missing object is an ``ok`` answer, ``error`` means the storage failed.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

BYTE_BUCKETS = (
    1024.0,
    16 * 1024.0,
    64 * 1024.0,
    256 * 1024.0,
    1024**2,
    2 * 1024**2,
    4 * 1024**2,
    6 * 1024**2,
    8 * 1024**2,
    10 * 1024**2,
    16 * 1024**2,
    64 * 1024**2,
)
PROCESSING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STORAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

UPLOAD_REQUESTS = Counter(
    "upload_requests",
    "Upload attempts by outcome (accepted, rejected, failed) and error code.",
    ["outcome", "code"],
)
UPLOAD_RECEIVED_BYTES = Histogram(
    "upload_received_bytes",
    "Body size of each upload attempt, in bytes.",
    buckets=BYTE_BUCKETS,
)
PROCESSING_DURATION = Histogram(
    "upload_processing_duration_seconds",
    "Image processing time by stage (intake, thumbnail, preview).",
    ["stage"],
    buckets=PROCESSING_BUCKETS,
)
STORAGE_DURATION = Histogram(
    "storage_operation_duration_seconds",
    "Storage call latency by backend, operation and outcome (ok, error).",
    ["backend", "operation", "outcome"],
    buckets=STORAGE_BUCKETS,
)
