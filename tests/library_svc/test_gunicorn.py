"""library-svc as real gunicorn processes on a real PostgreSQL: races, readiness, pool metrics."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, func, select

from library_svc.database import engine_url
from library_svc.migrate import upgrade
from library_svc.models import Draft, Person
from testbed.metrics import samples
from testbed.postgres import PostgresServer
from testbed.processes import Service, gunicorn_service
from tests.library_svc.conftest import who

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def library(
    postgres: PostgresServer, upload_svc: Service, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    tmp: Path = tmp_path_factory.mktemp("library-gunicorn")
    url = postgres.create_database(f"library_gunicorn_{uuid.uuid4().hex[:8]}")
    upgrade(url)
    service = gunicorn_service(
        "library-svc",
        tmp,
        {
            "DATABASE_URL": url,
            "OTEL_SDK_DISABLED": "true",
            "SWEEP_INTERVAL_SECONDS": "0",
            "UPLOAD_SVC_URL": upload_svc.url,
            "FIREBASE_CLAIMS_ENABLED": "false",
        },
        workers=2,
        threads=4,
    ).start()
    service.database_url = url  # type: ignore[attr-defined]
    yield service
    service.stop()


def test_two_clients_with_one_etag_exactly_one_wins_every_time(library: Service) -> None:
    uid = f"racer-{uuid.uuid4().hex[:8]}"
    url = f"{library.url}/v1/drafts/{uuid.uuid4()}"
    created = requests.put(
        url, json={"title": "race", "body": "start"}, headers=who(uid), timeout=10
    )
    assert created.status_code == 201
    etag = created.json()["etag"]
    winners: list[str] = []
    sessions = [requests.Session(), requests.Session()]
    for round_number in range(20):
        barrier = threading.Barrier(2)
        answers: dict[str, requests.Response] = {}

        def patch(
            name: str,
            session: requests.Session,
            body: str,
            *,
            barrier: threading.Barrier = barrier,
            answers: dict[str, requests.Response] = answers,
            etag: str = etag,
        ) -> None:
            barrier.wait()
            answers[name] = session.patch(
                url, json={"body": body}, headers={**who(uid), "If-Match": etag}, timeout=10
            )

        threads = [
            threading.Thread(target=patch, args=(name, sessions[i], f"{name}-{round_number}"))
            for i, name in enumerate(("a", "b"))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        statuses = sorted(answer.status_code for answer in answers.values())
        assert statuses == [200, 412], {k: (v.status_code, v.text) for k, v in answers.items()}
        winner = next(answer for answer in answers.values() if answer.status_code == 200)
        loser = next(answer for answer in answers.values() if answer.status_code == 412)
        assert loser.json()["error"]["details"]["current"] == winner.json()
        winners.append(winner.json()["body"])
        etag = winner.json()["etag"]

    kept = requests.get(f"{url}/revisions?page_size=100", headers=who(uid), timeout=10).json()
    assert kept["total"] == 21
    assert [revision["body"] for revision in kept["revisions"]] == [*reversed(winners), "start"]
    assert requests.get(url, headers=who(uid), timeout=10).json()["version"] == 21


def test_readiness_checks_the_database_and_the_pool_is_in_the_metrics(library: Service) -> None:
    ready = requests.get(f"{library.url}/readyz", timeout=10)
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok"}
    deadline = time.monotonic() + 15
    while True:  # each worker publishes its pool once it has booted
        found = {
            (name, labels.get("state")): value
            for name, labels, value in samples(library.metrics_url)
        }
        if found.get(("library_db_pool_size", None)) == 8 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert found[("library_db_pool_size", None)] == 8  # 2 workers x 4 threads
    for state in ("checked_out", "idle", "overflow"):
        assert ("library_db_pool_connections", state) in found
    assert found[("library_db_pool_connections", "idle")] >= 1


def test_no_change_commits_once_the_account_deletion_has_begun(library: Service) -> None:
    uid = f"leaving-{uuid.uuid4().hex[:8]}"
    stop = threading.Event()
    answers: list[tuple[float, int]] = []

    def keep_writing() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                answer = session.put(
                    f"{library.url}/v1/drafts/{uuid.uuid4()}",
                    json={"body": "still typing"},
                    headers=who(uid),
                    timeout=10,
                )
                answers.append((time.monotonic(), answer.status_code))

    writers = [threading.Thread(target=keep_writing) for _ in range(4)]
    for writer in writers:
        writer.start()
    time.sleep(0.5)
    deleted = requests.delete(f"{library.url}/v1/me", headers=who(uid), timeout=30)
    finished = time.monotonic()
    time.sleep(0.5)
    stop.set()
    for writer in writers:
        writer.join()
    assert deleted.status_code == 204
    assert {status for _, status in answers} <= {201, 410}
    assert any(status == 201 for _, status in answers)
    assert all(status == 410 for at, status in answers if at > finished)
    engine = create_engine(engine_url(library.database_url))  # type: ignore[attr-defined]
    try:
        with engine.connect() as connection:
            for model, column in ((Draft, Draft.owner), (Person, Person.uid)):
                count = connection.scalar(
                    select(func.count()).select_from(model).where(column == uid)
                )
                assert count == 0, model.__tablename__
    finally:
        engine.dispose()
