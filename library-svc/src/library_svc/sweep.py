"""The sweep: finish stalled account deletions, prune old tombstones, settle tier claims.

Runs in each worker every ``SWEEP_INTERVAL_SECONDS`` (every step is safe to run twice
at once), or once from the command line: ``python -m library_svc.sweep``.
"""

from __future__ import annotations

import threading

import structlog
from flask import Flask
from sqlalchemy import select

from library_svc import deletion
from library_svc.models import Entitlement, Person, utcnow
from library_svc.sync import prune_tombstones

log = structlog.get_logger(__name__)


def sweep_once(app: Flask) -> dict[str, int]:
    from library_svc.billing import keep_claim_in_step
    from library_svc.database import db

    settings = app.config["SETTINGS"]
    done = {"deletions_finished": 0, "tombstones_pruned": 0, "claims_checked": 0}
    with app.test_request_context("/internal/sweep"):
        session = db()
        for uid in deletion.stalled(session, settings.sweep_grace_seconds):
            if deletion.finish(session, app.extensions["uploads"], app.extensions["firebase"], uid):
                done["deletions_finished"] += 1
        done["tombstones_pruned"] = prune_tombstones(
            session, None, settings.tombstone_retention_seconds
        )
        lapsed = session.scalars(
            select(Person.uid)
            .join(Entitlement, Entitlement.owner == Person.uid)
            .where(Person.claimed_tier == "pro", Entitlement.expires_at < utcnow())
            .distinct()
        ).all()
        session.rollback()
        for uid in lapsed:
            try:
                keep_claim_in_step(uid)
                done["claims_checked"] += 1
            except Exception as error:
                log.warning("sweep_claim_failed", uid=uid, error=str(error))
        deletion.publish_pending(session)
    return done


def start_periodic_sweep(app: Flask, interval: float) -> threading.Thread:
    stop = threading.Event()

    def publish() -> None:
        from library_svc.database import db

        with app.test_request_context("/internal/sweep"):
            deletion.publish_pending(db())

    def loop() -> None:
        # The pending count is known from the start, not only after the first interval.
        try:
            publish()
        except Exception as error:
            log.warning("pending_deletions_unknown", error=str(error))
        while not stop.wait(interval):
            try:
                log.info("sweep", **sweep_once(app))
            except Exception as error:
                log.warning("sweep_failed", error=str(error))

    thread = threading.Thread(target=loop, name="library-sweep", daemon=True)
    thread.start()
    app.extensions["sweep_stop"] = stop
    return thread


def main() -> int:
    from library_svc.app import create_app

    print(sweep_once(create_app()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
