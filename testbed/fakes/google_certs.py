"""Google's x509 certificate endpoint for Firebase ID tokens, served on loopback.

It answers ``GET /`` as ``securetoken@system.gserviceaccount.com``'s endpoint does:
JSON ``{kid: PEM certificate}`` with ``Cache-Control: public, max-age=N`` and ``Date``.
Keys are test RSA keys made with ``cryptography``; :meth:`FakeGoogleCerts.token` signs
ID tokens with them the way Firebase does (RS256, ``kid`` in the header). Fetches are
counted, and the keys can be rotated mid-test.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

ISSUER_PREFIX = "https://securetoken.google.com/"


def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def certificate_pem(key: rsa.RSAPrivateKey) -> str:
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "securetoken.system.gserviceaccount.com")]
    )
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=14))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


class FakeGoogleCerts:
    def __init__(self, max_age: int = 3600, delay: float = 0.0) -> None:
        self.max_age = max_age
        self.delay = delay
        self.fetches = 0
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.pems: dict[str, str] = {}
        self._lock = threading.Lock()
        self.add_key("key-1")
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with fake._lock:
                    fake.fetches += 1
                    body = json.dumps(fake.pems).encode()
                if fake.delay:
                    time.sleep(fake.delay)
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header(
                    "Cache-Control", f"public, max-age={fake.max_age}, must-revalidate"
                )
                self.send_header("Date", formatdate(usegmt=True))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def start(self) -> FakeGoogleCerts:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add_key(self, kid: str, *, replace: bool = False) -> None:
        """Publish a new key (``replace``: as the only one, as after a rotation)."""
        key = signing_key()
        with self._lock:
            if replace:
                self.keys, self.pems = {}, {}
            self.keys[kid] = key
            self.pems[kid] = certificate_pem(key)

    def claims(self, project: str, uid: str, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER_PREFIX + project,
            "aud": project,
            "auth_time": now,
            "user_id": uid,
            "sub": uid,
            "iat": now,
            "exp": now + 3600,
            "firebase": {"identities": {}, "sign_in_provider": "password"},
        }
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def token(
        self, project: str, uid: str, *, kid: str = "key-1", key: Any = None, **claims: Any
    ) -> str:
        """An ID token as Firebase signs it; ``key`` signs with another key (forgery)."""
        signing = key if key is not None else self.keys[kid]
        return jwt.encode(
            self.claims(project, uid, **claims), signing, algorithm="RS256", headers={"kid": kid}
        )


if __name__ == "__main__":  # pragma: no cover - manual runs
    fake = FakeGoogleCerts().start()
    print(fake.url, flush=True)
    threading.Event().wait()
