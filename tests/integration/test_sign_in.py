"""Signing in end to end: the real Firebase Auth emulator, the real gunicorn stack.

A person signs up and signs in with the emulator, snaps through the gateway as that
person, and a ``tier: pro`` custom claim gives pro limits on a fresh token.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from testbed.images import photo
from testbed.processes import ROOT, Stack, base_env, start_stack
from tests.support.firebase_emulator import AuthEmulator

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, auth_emulator: AuthEmulator) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("sign-in"), gateway_env={**auth_emulator.env()})
    yield running
    running.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_sign_up_sign_in_and_snap_as_that_person(stack: Stack, auth_emulator: AuthEmulator) -> None:
    email = f"snapper-{secrets.token_hex(4)}@example.com"
    account = auth_emulator.sign_up(email)
    token = auth_emulator.sign_in(email)["idToken"]
    answer = requests.post(
        f"{stack.url}/v1/snaps",
        files={"image": ("p.jpg", photo(), "image/jpeg")},
        data={"template": "social_post"},
        headers=bearer(token),
        timeout=60,
    )
    assert answer.status_code == 201, answer.text
    assert answer.headers["X-RateLimit-Limit"] == "10"  # free: the ai limit is closest
    policy = answer.headers["RateLimit-Policy"]
    assert policy.startswith("120;w=60"), policy
    records = [
        record
        for record in stack.gateway.managed.log_records()
        if record.get("event") == "invalid_token"
    ]
    assert not records
    assert account["localId"]


def test_a_pro_claim_gives_pro_limits_on_a_fresh_token(
    stack: Stack, auth_emulator: AuthEmulator
) -> None:
    email = f"pro-{secrets.token_hex(4)}@example.com"
    uid = auth_emulator.sign_up(email)["localId"]
    free = requests.get(
        f"{stack.url}/v1/presets",
        headers=bearer(auth_emulator.sign_in(email)["idToken"]),
        timeout=10,
    )
    assert free.headers["X-RateLimit-Limit"] == "120"
    auth_emulator.set_claims(uid, {"tier": "pro"})
    pro = requests.get(
        f"{stack.url}/v1/presets",
        headers=bearer(auth_emulator.sign_in(email)["idToken"]),
        timeout=10,
    )
    assert pro.status_code == 200
    assert pro.headers["X-RateLimit-Limit"] == "600"
    assert pro.headers["X-RateLimit-Remaining"] == "599"  # a limit of its own, from zero


def test_a_made_up_token_is_refused_even_in_emulator_mode(stack: Stack) -> None:
    answer = requests.get(f"{stack.url}/v1/presets", headers=bearer("a.b.c"), timeout=10)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "invalid_token"


def test_emulator_mode_refuses_to_start_in_production(
    tmp_path: Path, auth_emulator: AuthEmulator
) -> None:
    env = base_env(ENVIRONMENT="production", **auth_emulator.env())
    completed = subprocess.run(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "-c",
            str(ROOT / "gateway" / "gunicorn.conf.py"),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode != 0
    assert "invalid setting FIREBASE_AUTH_EMULATOR_HOST" in completed.stderr + completed.stdout
