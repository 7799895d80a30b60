"""The Firebase Auth emulator (npm ``firebase-tools``), started once per test session.

It is the real local stand-in for Firebase Authentication: sign-up, sign-in, custom
claims and user deletion over the same REST API the Firebase SDKs use. Its ID tokens are
unsigned (``alg: none``), which is why the gateway accepts them only in emulator mode.
``make firebase-tools`` installs the CLI into ``.tools/firebase-tools``; the fixture in
``tests/conftest.py`` starts it on free ports with the UI disabled (the UI would be
downloaded at start, and nothing here reaches the internet).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from testbed.processes import ROOT, ManagedProcess, base_env, free_port

FIREBASE_CLI = ROOT / ".tools" / "firebase-tools" / "node_modules" / ".bin" / "firebase"
PROJECT_ID = "demo-ideasnap"
API_KEY = "fake-api-key"
IDENTITY = "identitytoolkit.googleapis.com/v1"


@dataclass
class AuthEmulator:
    """A running Auth emulator and the calls tests make against it."""

    host: str
    project_id: str
    managed: ManagedProcess

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def _post(self, path: str, body: dict[str, Any], *, admin: bool = False) -> dict[str, Any]:
        headers = {"Authorization": "Bearer owner"} if admin else {}
        answer = requests.post(
            f"{self.url}/{path}", params={"key": API_KEY}, json=body, headers=headers, timeout=10
        )
        answer.raise_for_status()
        return answer.json()

    def sign_up(self, email: str, password: str = "correct-horse-9") -> dict[str, Any]:
        """A new email/password account; the answer has ``localId`` (uid) and ``idToken``."""
        return self._post(
            f"{IDENTITY}/accounts:signUp",
            {"email": email, "password": password, "returnSecureToken": True},
        )

    def sign_in(self, email: str, password: str = "correct-horse-9") -> dict[str, Any]:
        """A fresh ID token, carrying the account's current custom claims."""
        return self._post(
            f"{IDENTITY}/accounts:signInWithPassword",
            {"email": email, "password": password, "returnSecureToken": True},
        )

    def set_claims(self, uid: str, claims: dict[str, Any]) -> None:
        self._post(
            f"{IDENTITY}/projects/{self.project_id}/accounts:update",
            {"localId": uid, "customAttributes": json.dumps(claims)},
            admin=True,
        )

    def lookup(self, uid: str) -> dict[str, Any] | None:
        """The account as the admin API sees it, or None once it is deleted."""
        answer = self._post(
            f"{IDENTITY}/projects/{self.project_id}/accounts:lookup", {"localId": [uid]}, admin=True
        )
        users = answer.get("users") or []
        return users[0] if users else None

    def env(self) -> dict[str, str]:
        """What a service needs to talk to this emulator (firebase-admin and the gateway)."""
        return {
            "FIREBASE_AUTH_EMULATOR_HOST": self.host,
            "FIREBASE_PROJECT_ID": self.project_id,
            "GOOGLE_CLOUD_PROJECT": self.project_id,
        }

    def stop(self) -> None:
        self.managed.stop()


def unsigned_token(project_id: str, uid: str, lifetime_seconds: int = 3600) -> str:
    """An ID token shaped as the Auth emulator makes them (``alg: none``, unsigned).

    Accepted only by a gateway in emulator mode, for tests that need a signed-in caller
    without the emulator process.
    """

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {
        "iss": f"https://securetoken.google.com/{project_id}",
        "aud": project_id,
        "sub": uid,
        "iat": now,
        "exp": now + lifetime_seconds,
    }
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def start_auth_emulator(workdir: Path, timeout: float = 90.0) -> AuthEmulator:
    if not FIREBASE_CLI.exists():
        raise RuntimeError(f"{FIREBASE_CLI} is missing: run `make firebase-tools`")
    workdir.mkdir(parents=True, exist_ok=True)
    port, hub, logging = free_port(), free_port(), free_port()
    config = {
        "emulators": {
            "auth": {"host": "127.0.0.1", "port": port},
            "hub": {"host": "127.0.0.1", "port": hub},
            "logging": {"host": "127.0.0.1", "port": logging},
            "ui": {"enabled": False},
            "singleProjectMode": True,
        }
    }
    (workdir / "firebase.json").write_text(json.dumps(config))
    env = base_env(
        HOME=str(workdir),
        FIREBASE_CLI_DISABLE_UPDATE_CHECK="true",
        NO_UPDATE_NOTIFIER="1",
        CI="1",
    )
    env.pop("FIREBASE_AUTH_EMULATOR_HOST", None)
    managed = ManagedProcess(
        name="firebase-auth-emulator",
        args=[
            str(FIREBASE_CLI),
            "emulators:start",
            "--only",
            "auth",
            "--project",
            PROJECT_ID,
        ],
        env=env,
        log_path=workdir / "firebase-auth-emulator.log",
        cwd=workdir,
    ).start()
    emulator = AuthEmulator(host=f"127.0.0.1:{port}", project_id=PROJECT_ID, managed=managed)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not managed.running:
            raise RuntimeError(f"the Auth emulator exited:\n{managed.log_text()[-3000:]}")
        try:
            requests.get(f"{emulator.url}/", timeout=1)
            return emulator
        except requests.RequestException:
            time.sleep(0.25)
    managed.stop()
    raise TimeoutError(f"the Auth emulator did not answer within {timeout}s")
