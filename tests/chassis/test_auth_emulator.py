"""The Auth emulator the account tests rely on behaves as Firebase Auth does."""

from __future__ import annotations

import base64
import json

from tests.support.firebase_emulator import AuthEmulator


def claims_of(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_sign_up_sign_in_and_custom_claims(auth_emulator: AuthEmulator) -> None:
    account = auth_emulator.sign_up("claims@example.com")
    uid = account["localId"]
    first = claims_of(account["idToken"])
    assert first["sub"] == uid
    assert first["aud"] == auth_emulator.project_id
    assert first["iss"] == f"https://securetoken.google.com/{auth_emulator.project_id}"
    assert "tier" not in first

    auth_emulator.set_claims(uid, {"tier": "pro"})
    assert claims_of(auth_emulator.sign_in("claims@example.com")["idToken"])["tier"] == "pro"
    assert auth_emulator.lookup(uid)["localId"] == uid
