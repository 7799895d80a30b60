"""library-svc's own metrics (the names are a contract with dashboards and alerts).

- ``library_db_pool_connections{state}``: the database pool per state, summed over the
  live workers: ``checked_out`` (in use), ``idle``, ``overflow`` (beyond the pool size).
- ``library_db_pool_size``: the configured pool size, summed over live workers
  (saturation is checked_out / size).
- ``library_account_deletions_total{outcome}``: account deletions ``completed`` or
  ``failed`` (an attempt that stopped half way; the record stays and is resumed).
- ``library_account_deletions_pending``: deletions begun and not yet finished.
- ``library_billing_events_total{type, outcome}``: webhook events applied, duplicate
  or ignored.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

POOL_CONNECTIONS = Gauge(
    "library_db_pool_connections",
    "Database pool connections by state (checked_out, idle, overflow).",
    ["state"],
    multiprocess_mode="livesum",
)
POOL_SIZE = Gauge(
    "library_db_pool_size",
    "Configured database pool size (summed over workers).",
    multiprocess_mode="livesum",
)
ACCOUNT_DELETIONS = Counter(
    "library_account_deletions",
    "Account deletion attempts by outcome (completed, failed).",
    ["outcome"],
)
ACCOUNT_DELETIONS_PENDING = Gauge(
    "library_account_deletions_pending",
    "Account deletions begun and not finished yet.",
    multiprocess_mode="mostrecent",
)
BILLING_EVENTS = Counter(
    "library_billing_events",
    "Purchase-provider webhook events by type and outcome (applied, duplicate, ignored).",
    ["type", "outcome"],
)


def declare_series() -> None:
    """Create the outcome series at 0, so an alert on their increase has a baseline and the
    dashboards show a zero rather than no data before the first deletion."""
    for outcome in ("completed", "failed"):
        ACCOUNT_DELETIONS.labels(outcome)
