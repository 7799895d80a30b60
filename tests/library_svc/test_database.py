"""A database that cannot be reached: not ready, and a clear 503 instead of a bare 500."""

from __future__ import annotations

from library_svc.app import create_app
from library_svc.settings import LibrarySettings
from testbed.processes import free_port
from tests.library_svc.conftest import who


def test_an_unreachable_database_is_not_ready_and_answers_503() -> None:
    app = create_app(
        LibrarySettings(
            database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/library",
            otel_sdk_disabled=True,
            sweep_interval_seconds=0,
            firebase_claims_enabled=False,
        )
    )
    client = app.test_client()
    try:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json["error"]["details"]["checks"] == {"database": "failed"}
        answer = client.get("/v1/snaps", headers=who("someone"))
        assert answer.status_code == 503
        assert answer.json["error"]["code"] == "database_unavailable"
        assert answer.headers["Retry-After"] == "2"
    finally:
        app.extensions["db_engine"].dispose()
