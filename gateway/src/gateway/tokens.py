"""Firebase ID tokens, verified the way production Firebase does it.

A token is accepted only when it is RS256 (nothing else: not ``none``, not HS256 signed
with the public certificate), its ``kid`` names one of Google's published x509
certificates for ``securetoken@system.gserviceaccount.com``, the signature checks, ``aud``
is the Firebase project, ``iss`` is ``https://securetoken.google.com/<project>``,
``exp`` and ``iat`` hold (with a small clock skew), and ``sub`` is 1-128 characters that
can travel in a header.

The certificates are fetched once and kept for their ``Cache-Control: max-age``; an
unknown ``kid`` (Google rotated the keys) fetches them again once, and at most once per
``refetch_seconds``, so a flood of made-up key ids cannot turn into a flood of fetches.
One fetch runs at a time per process: other threads wait for it and use its result.
When a refresh fails, the keys already held keep working until a fetch succeeds.

PyJWT with ``cryptography`` does the work: a warm verify measured 0.12-0.17 ms here against
firebase-admin's 0.75 ms (most of that its HTTP cache layer), see ``bench/tokens.py``.

Emulator mode (``FIREBASE_AUTH_EMULATOR_HOST``) accepts the Auth emulator's unsigned
tokens and still checks ``aud``, ``iss``, ``exp`` and ``sub``; settings refuse it in
production.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import requests
import structlog
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.x509 import load_pem_x509_certificate

from chassis.caller import USER_PATTERN

log = structlog.get_logger(__name__)

ISSUER_PREFIX = "https://securetoken.google.com/"
MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*(\d+)", re.IGNORECASE)
DEFAULT_MAX_AGE_SECONDS = 3600
FETCH_TIMEOUT_SECONDS = 5.0
REQUIRED_CLAIMS = ("exp", "iat", "aud", "iss", "sub")


class InvalidToken(Exception):
    """The token is not one the gateway accepts; the message says why (for logs only)."""


class CertificatesUnavailable(Exception):
    """Google's certificates could not be fetched and none are held."""


@dataclass(frozen=True)
class VerifiedToken:
    uid: str
    claims: dict[str, Any]


def max_age(cache_control: str | None, age: str | None) -> int:
    """Seconds the answer may be kept: ``max-age`` less the ``Age`` it already has."""
    found = MAX_AGE.search(cache_control or "")
    seconds = int(found.group(1)) if found else DEFAULT_MAX_AGE_SECONDS
    if age and age.isdigit():
        seconds -= int(age)
    return max(0, seconds)


def parse_certificates(payload: object) -> dict[str, RSAPublicKey]:
    """``{kid: PEM certificate}`` as Google serves it, to the RSA public keys inside."""
    if not isinstance(payload, dict) or not payload:
        raise ValueError("expected a JSON object of key id to PEM certificate")
    keys: dict[str, RSAPublicKey] = {}
    for kid, pem in payload.items():
        if not isinstance(kid, str) or not isinstance(pem, str):
            raise ValueError("expected a JSON object of key id to PEM certificate")
        public_key = load_pem_x509_certificate(pem.encode()).public_key()
        if not isinstance(public_key, RSAPublicKey):
            raise ValueError(f"certificate {kid!r} does not hold an RSA key")
        keys[kid] = public_key
    return keys


class CertificateCache:
    """Google's signing keys by ``kid``, kept per ``Cache-Control``; one fetch at a time."""

    def __init__(
        self,
        url: str,
        *,
        refetch_seconds: float = 10.0,
        timeout: float = FETCH_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.refetch_seconds = refetch_seconds
        self.timeout = timeout
        self.clock = clock
        self.fetches = 0
        self._session = requests.Session()
        self._session.trust_env = False
        self._lock = threading.Lock()
        self._keys: dict[str, RSAPublicKey] = {}
        self._expires_at = 0.0
        self._fetched_at: float | None = None
        self._failed_at: float | None = None

    def _fresh(self) -> bool:
        return bool(self._keys) and self.clock() < self._expires_at

    def _fetch(self) -> None:
        """Fetch now (lock held); on failure keep what is held and log it."""
        self.fetches += 1
        self._fetched_at = self.clock()
        try:
            answer = self._session.get(self.url, timeout=self.timeout)
            answer.raise_for_status()
            keys = parse_certificates(answer.json())
        except (requests.RequestException, ValueError) as error:
            self._failed_at = self._fetched_at
            log.warning(
                "firebase_certificates_unavailable",
                error=f"{type(error).__name__}: {error}",
                keys_held=len(self._keys),
            )
            return
        self._keys, self._failed_at = keys, None
        seconds = max_age(answer.headers.get("Cache-Control"), answer.headers.get("Age"))
        self._expires_at = self.clock() + seconds
        log.info("firebase_certificates_fetched", keys=len(keys), max_age_seconds=seconds)

    def key(self, kid: str) -> RSAPublicKey:
        """The key for ``kid``: from the cache, after a due refresh, or after one refetch."""
        if self._fresh():
            found = self._keys.get(kid)
            if found is not None:
                return found
        with self._lock:
            if self._fetch_due(kid):
                self._fetch()
            found = self._keys.get(kid)
            if found is not None:
                return found
            if not self._keys:
                raise CertificatesUnavailable("Google's certificates could not be fetched")
        raise InvalidToken("unknown key id")

    def _fetch_due(self, kid: str) -> bool:
        if not self._fresh():
            return not self._failed_recently()
        return kid not in self._keys and self._may_refetch()

    def _failed_recently(self) -> bool:
        """Google being unreachable is not retried by every waiting thread in turn."""
        return self._failed_at is not None and self.clock() - self._failed_at < 1.0

    def _may_refetch(self) -> bool:
        return self._fetched_at is None or self.clock() - self._fetched_at >= self.refetch_seconds


class TokenVerifier:
    """Checks a Firebase ID token for one project; ``verify`` raises :class:`InvalidToken`."""

    def __init__(
        self,
        project_id: str,
        certificates: CertificateCache | None,
        *,
        skew_seconds: int = 60,
        emulator: bool = False,
    ) -> None:
        if certificates is None and not emulator:
            raise ValueError("certificates are needed outside emulator mode")
        self.project_id = project_id
        self.issuer = ISSUER_PREFIX + project_id
        self.certificates = certificates
        self.skew_seconds = skew_seconds
        self.emulator = emulator

    def verify(self, token: str) -> VerifiedToken:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise InvalidToken(f"not a JWT: {error}") from None
        if self.emulator:
            claims = self._emulator_claims(token, header)
        else:
            claims = self._signed_claims(token, header)
        return VerifiedToken(uid=self._subject(claims), claims=claims)

    def _signed_claims(self, token: str, header: dict[str, Any]) -> dict[str, Any]:
        if header.get("alg") != "RS256":
            raise InvalidToken(f"algorithm {header.get('alg')!r} is not RS256")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("no key id")
        assert self.certificates is not None
        key = self.certificates.key(kid)
        try:
            return jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self.project_id,
                issuer=self.issuer,
                leeway=self.skew_seconds,
                options={"require": list(REQUIRED_CLAIMS), "verify_iat": True},
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(f"{type(error).__name__}: {error}") from None

    def _emulator_claims(self, token: str, header: dict[str, Any]) -> dict[str, Any]:
        """The emulator signs nothing (``alg: none``); the claims are still checked."""
        if header.get("alg") != "none":
            raise InvalidToken("emulator mode accepts only the emulator's unsigned tokens")
        try:
            claims = jwt.decode(
                token,
                options={"verify_signature": False, "require": ["exp", "aud", "iss", "sub"]},
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(f"{type(error).__name__}: {error}") from None
        if claims.get("aud") != self.project_id:
            raise InvalidToken("wrong audience")
        if claims.get("iss") != self.issuer:
            raise InvalidToken("wrong issuer")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp + self.skew_seconds < time.time():
            raise InvalidToken("expired")
        return claims

    def _subject(self, claims: dict[str, Any]) -> str:
        iat = claims.get("iat")
        if iat is not None and (
            not isinstance(iat, int | float) or iat > time.time() + self.skew_seconds
        ):
            raise InvalidToken("issued in the future")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject or len(subject) > 128:
            raise InvalidToken("sub must be 1 to 128 characters")
        if not USER_PATTERN.fullmatch(subject):
            raise InvalidToken("sub has characters a user id may not have")
        return subject
