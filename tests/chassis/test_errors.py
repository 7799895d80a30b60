"""Every failure is the JSON envelope; a 500 shows no internals."""

from __future__ import annotations

import pytest
from flask import Flask

from chassis.app import create_service_app
from chassis.errors import ApiError
from chassis.settings import ServiceSettings


@pytest.fixture
def app() -> Flask:
    app = create_service_app(ServiceSettings(service_name="test-svc"), "test_errors")

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("database password is hunter2")

    @app.get("/teapot")
    def teapot() -> str:
        raise ApiError(409, "already_there", "It exists.", headers={"Retry-After": "3"})

    return app


def test_unexpected_exception_is_a_clean_500(app: Flask) -> None:
    response = app.test_client().get("/boom", headers={"X-Request-ID": "abcdef12-3456"})
    assert response.status_code == 500
    body = response.get_json()
    assert body["error"]["code"] == "internal_error"
    assert body["error"]["request_id"] == "abcdef12-3456"
    assert "hunter2" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)


def test_api_error_keeps_status_code_and_headers(app: Flask) -> None:
    response = app.test_client().get("/teapot")
    assert response.status_code == 409
    assert response.headers["Retry-After"] == "3"
    error = response.get_json()["error"]
    assert error["code"] == "already_there"
    assert error["request_id"] == response.headers["X-Request-ID"]


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [("GET", "/nowhere", 404, "not_found"), ("POST", "/healthz", 405, "method_not_allowed")],
)
def test_routing_errors_are_json(
    app: Flask, method: str, path: str, status: int, code: str
) -> None:
    response = app.test_client().open(path, method=method)
    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code


def test_invalid_request_id_is_replaced(app: Flask) -> None:
    response = app.test_client().get("/healthz", headers={"X-Request-ID": "bad id <script>"})
    assert response.headers["X-Request-ID"] != "bad id <script>"
    assert len(response.headers["X-Request-ID"]) == 32


def test_readiness_reports_failing_checks(app: Flask) -> None:
    from chassis.health import add_readiness_check

    def broken() -> None:
        raise OSError("disk gone")

    add_readiness_check(app, "storage", broken)
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()["error"]
    assert body["code"] == "not_ready"
    assert body["details"]["checks"] == {"storage": "failed"}
