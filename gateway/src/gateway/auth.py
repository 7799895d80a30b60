"""Who a request is for: the Firebase ID token in ``Authorization: Bearer``, verified here.

The gateway is the one place that knows. Before the rate limits are checked (they count
per person for signed-in requests), each public API call is resolved to a
:class:`chassis.caller.Caller`:

- no ``Authorization`` header: anonymous (tier ``anonymous``), unless the operation
  declares ``sign_in="required"`` in :data:`gateway.contract.OPERATIONS`, which is then
  401 ``sign_in_required`` with ``WWW-Authenticate: Bearer``;
- a token that verifies (see :mod:`gateway.tokens`): that person, with the tier its
  ``tier`` custom claim names (``free`` by default; see :mod:`gateway.tiers`);
- anything else (not ``Bearer``, expired, wrong audience, wrong algorithm, tampered,
  unknown key): 401 ``invalid_token`` with ``WWW-Authenticate: Bearer
  error="invalid_token"``, never silently anonymous, so an app with a stale token learns
  to refresh it instead of losing its person's budget and history;
- Google's certificates unreachable with none held: 503 ``auth_unavailable``.

Every call to every service then carries the caller as ``X-IdeaSnap-User`` /
``X-IdeaSnap-Tier`` (:func:`identity_headers`, added by :func:`gateway.proxy.call`); the
copies a client sent are never passed on.
"""

from __future__ import annotations

from collections.abc import Collection

import structlog
from flask import Flask, g, request

from chassis.caller import ANONYMOUS, IDENTITY_HEADERS, Caller
from chassis.errors import ApiError
from gateway.settings import GatewaySettings
from gateway.tiers import Tier, Tiers
from gateway.tokens import (
    CertificateCache,
    CertificatesUnavailable,
    InvalidToken,
    TokenVerifier,
)

log = structlog.get_logger(__name__)

INVALID_TOKEN_CHALLENGE = 'Bearer error="invalid_token"'  # noqa: S105 - a header value
SIGN_IN_CHALLENGE = 'Bearer realm="ideasnap"'
IDENTITY_HEADER_NAMES = frozenset(name.lower() for name in IDENTITY_HEADERS)


def build_verifier(settings: GatewaySettings) -> TokenVerifier | None:
    """The verifier for the configured project; None when sign-in is not configured."""
    if not settings.firebase_project_id:
        log.warning(
            "sign_in_not_configured",
            detail="FIREBASE_PROJECT_ID is unset: every bearer token is refused",
        )
        return None
    if settings.firebase_auth_emulator_host:
        log.warning(
            "firebase_auth_emulator_mode",
            detail="accepting the Auth emulator's unsigned tokens; never do this in production",
            emulator=settings.firebase_auth_emulator_host,
        )
        return TokenVerifier(
            settings.firebase_project_id,
            None,
            skew_seconds=settings.token_clock_skew_seconds,
            emulator=True,
        )
    return TokenVerifier(
        settings.firebase_project_id,
        CertificateCache(settings.firebase_certs_url),
        skew_seconds=settings.token_clock_skew_seconds,
    )


def invalid_token(message: str = "The sign-in token is not valid; sign in again.") -> ApiError:
    return ApiError(
        401, "invalid_token", message, headers={"WWW-Authenticate": INVALID_TOKEN_CHALLENGE}
    )


def current_caller() -> Caller:
    """The caller the gateway established for this request (anonymous before that)."""
    return g.get("gateway_caller", ANONYMOUS)


def identity_headers() -> dict[str, str]:
    """``X-IdeaSnap-User`` / ``X-IdeaSnap-Tier`` for a call to any service."""
    return current_caller().headers()


class Authenticator:
    """Resolves each public API call to its caller; knows which operations need sign-in."""

    def __init__(
        self, verifier: TokenVerifier | None, tiers: Tiers, sign_in_required: Collection[str]
    ) -> None:
        self.verifier = verifier
        self.tiers = tiers
        self.sign_in_required = frozenset(sign_in_required)

    def resolve(self) -> Caller:
        header = request.headers.get("Authorization")
        if header is None:
            if request.endpoint in self.sign_in_required:
                raise ApiError(
                    401,
                    "sign_in_required",
                    "Sign in: send Authorization: Bearer <Firebase ID token>.",
                    headers={"WWW-Authenticate": SIGN_IN_CHALLENGE},
                )
            return ANONYMOUS
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise invalid_token("Send the token as Authorization: Bearer <Firebase ID token>.")
        if self.verifier is None:
            raise invalid_token("Sign-in is not configured on this server.")
        try:
            verified = self.verifier.verify(token)
        except InvalidToken as error:
            log.info("invalid_token", reason=str(error))
            raise invalid_token() from None
        except CertificatesUnavailable:
            raise ApiError(
                503,
                "auth_unavailable",
                "Sign-in cannot be checked right now; retry shortly.",
                headers={"Retry-After": "5"},
            ) from None
        tier = self.tiers.signed_in_tier(verified.claims.get("tier"))
        return Caller(user=verified.uid, tier=tier)

    def authenticate(self) -> Caller:
        caller = g.get("gateway_caller")
        if caller is None:
            caller = self.resolve()
            g.gateway_caller = caller
        return caller

    def tier(self) -> Tier:
        """The limits of the current caller's tier."""
        return self.tiers.get(current_caller().tier)


def install_authentication(
    app: Flask, authenticator: Authenticator, endpoints: Collection[str]
) -> None:
    """Resolve the caller of every public API call; must run before the rate limits."""
    public = frozenset(endpoints)

    @app.before_request
    def _authenticate() -> None:
        if request.method != "OPTIONS" and request.endpoint in public:
            authenticator.authenticate()
