"""Killing library-svc in the middle of an account deletion, then retrying, completes it.

Real parts: library-svc under gunicorn on PostgreSQL, upload-svc under gunicorn behind a
proxy that holds requests (upload-svc gone slow), the Firebase Auth emulator. The
service is SIGKILLed while it waits on upload-svc for the first photo deletion.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, func, select

from library_svc.database import engine_url
from library_svc.migrate import upgrade
from library_svc.models import AccountDeletion, Draft, DraftRevision, Person, Snap
from testbed.metrics import total
from testbed.postgres import PostgresServer
from testbed.processes import Service, gunicorn_service
from tests.library_svc.conftest import snap_record, store_photo, who
from tests.support.firebase_emulator import AuthEmulator
from tests.support.slow_proxy import SlowProxy

pytestmark = pytest.mark.integration


def library_service(tmp: Path, env: dict[str, str]) -> Service:
    return gunicorn_service("library-svc", tmp, env, workers=1, threads=4).start()


def test_a_deletion_killed_half_way_is_completed_by_the_retry(
    postgres: PostgresServer,
    upload_svc: Service,
    auth_emulator: AuthEmulator,
    tmp_path: Path,
) -> None:
    url = postgres.create_database(f"library_crash_{uuid.uuid4().hex[:8]}")
    upgrade(url)
    proxy = SlowProxy(upload_svc.port)
    env = {
        "DATABASE_URL": url,
        "OTEL_SDK_DISABLED": "true",
        "SWEEP_INTERVAL_SECONDS": "0",
        "UPLOAD_SVC_URL": proxy.url,
        **auth_emulator.env(),
    }
    engine = create_engine(engine_url(url))
    library = library_service(tmp_path, env)
    try:
        uid = auth_emulator.sign_up(f"crash-{uuid.uuid4().hex[:8]}@example.com")["localId"]
        uploads = [store_photo(upload_svc, uid) for _ in range(3)]
        for upload in uploads:
            recorded = requests.post(
                f"{library.url}/internal/snaps",
                json=snap_record(upload),
                headers=who(uid),
                timeout=10,
            )
            assert recorded.status_code == 201
        draft = requests.put(
            f"{library.url}/v1/drafts/{uuid.uuid4()}",
            json={"body": "x"},
            headers=who(uid),
            timeout=10,
        )
        assert draft.status_code == 201

        proxy.hold()
        outcome: list[object] = []

        def delete_account() -> None:
            try:
                outcome.append(
                    requests.delete(f"{library.url}/v1/me", headers=who(uid), timeout=30)
                )
            except requests.RequestException as error:
                outcome.append(error)

        caller = threading.Thread(target=delete_account)
        caller.start()
        deadline = time.monotonic() + 15
        while proxy.held_chunks == 0:
            assert time.monotonic() < deadline, "library-svc never called upload-svc"
            time.sleep(0.05)
        assert library.managed.process is not None
        os.killpg(library.managed.process.pid, signal.SIGKILL)
        library.managed.process.wait(10)
        caller.join(10)
        assert isinstance(outcome[0], requests.RequestException)  # no answer: it died

        with engine.connect() as connection:
            record = connection.execute(
                select(AccountDeletion).where(AccountDeletion.uid == uid)
            ).one()
            assert record.completed_at is None
            assert connection.scalar(select(func.count()).where(Snap.owner == uid)) == 3
        assert auth_emulator.lookup(uid) is not None
        proxy.release()
        time.sleep(0.2)

        library = library_service(tmp_path, env)
        refused = requests.get(f"{library.url}/v1/snaps", headers=who(uid), timeout=10)
        assert refused.status_code == 410
        assert refused.json()["error"]["code"] == "account_deleted"
        retried = requests.delete(f"{library.url}/v1/me", headers=who(uid), timeout=30)
        assert retried.status_code == 204

        for upload in uploads:
            photo = requests.get(f"{upload_svc.url}/v1/uploads/{upload['id']}", timeout=10)
            assert photo.status_code == 404
        with engine.connect() as connection:
            for model, column in (
                (Person, Person.uid),
                (Snap, Snap.owner),
                (Draft, Draft.owner),
                (DraftRevision, DraftRevision.owner),
            ):
                count = connection.scalar(
                    select(func.count()).select_from(model).where(column == uid)
                )
                assert count == 0, model.__tablename__
            completed = connection.execute(
                select(AccountDeletion).where(AccountDeletion.uid == uid)
            ).one()
            assert completed.completed_at is not None
            assert completed.attempts == 2
        assert auth_emulator.lookup(uid) is None
        assert (
            total(library.metrics_url, "library_account_deletions_total", outcome="completed") == 1
        )
        assert total(library.metrics_url, "library_account_deletions_pending") == 0
    finally:
        proxy.close()
        with contextlib.suppress(Exception):
            library.stop()
        engine.dispose()
