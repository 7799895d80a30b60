"""The one way a service reads who a request is for."""

from __future__ import annotations

import pytest
from flask import Flask

from chassis.caller import (
    ANONYMOUS,
    TIER_HEADER,
    USER_HEADER,
    Caller,
    current_caller,
)


@pytest.fixture
def app() -> Flask:
    return Flask(__name__)


def test_no_headers_is_anonymous(app: Flask) -> None:
    with app.test_request_context("/"):
        assert current_caller() == ANONYMOUS
        assert not current_caller().signed_in


def test_gateway_headers_give_the_person_and_tier(app: Flask) -> None:
    with app.test_request_context("/", headers={USER_HEADER: "uid-123", TIER_HEADER: "pro"}):
        caller = current_caller()
    assert caller == Caller(user="uid-123", tier="pro")
    assert caller.signed_in
    assert caller.headers() == {USER_HEADER: "uid-123", TIER_HEADER: "pro"}


@pytest.mark.parametrize("user", ["", "a b", "x" * 129, "uid;drop", "../etc"])
def test_malformed_user_is_anonymous(app: Flask, user: str) -> None:
    with app.test_request_context("/", headers={USER_HEADER: user, TIER_HEADER: "pro"}):
        assert current_caller() == ANONYMOUS


@pytest.mark.parametrize("tier", [None, "", "anonymous", "PRO", "pro tier"])
def test_signed_in_without_a_usable_tier_is_free(app: Flask, tier: str | None) -> None:
    headers = {USER_HEADER: "uid-123"}
    if tier is not None:
        headers[TIER_HEADER] = tier
    with app.test_request_context("/", headers=headers):
        assert current_caller() == Caller(user="uid-123", tier="free")


def test_outside_a_request_is_anonymous() -> None:
    assert current_caller() == ANONYMOUS
