"""Who a request is for, as the gateway established it.

The gateway alone verifies Firebase ID tokens. It removes any ``X-IdeaSnap-User`` and
``X-IdeaSnap-Tier`` a client sent and sets them from the verified token, so behind it a
service reads the caller from these two headers and never sees a token. NetworkPolicies
let only the gateway reach the services, which is what makes the headers trustworthy.

A request without ``X-IdeaSnap-User`` is anonymous. A malformed value is treated as
anonymous too rather than trusted: the headers are only ever written by the gateway, so
a bad one is a bug or a bypass attempt, and neither should own anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flask import has_request_context, request

USER_HEADER = "X-IdeaSnap-User"
TIER_HEADER = "X-IdeaSnap-Tier"
IDENTITY_HEADERS = (USER_HEADER, TIER_HEADER)

ANONYMOUS_TIER = "anonymous"
SIGNED_IN_DEFAULT_TIER = "free"
TIER_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
# Firebase uids are 1..128 characters; the emulator and custom-token uids may use more
# than the 28-character alphanumerics of production sign-ins, but never control
# characters, spaces or anything a header or a storage prefix could trip over.
USER_PATTERN = re.compile(r"^[A-Za-z0-9._:@+=-]{1,128}$")


@dataclass(frozen=True)
class Caller:
    """The person a request is for, or nobody."""

    user: str | None
    tier: str

    @property
    def signed_in(self) -> bool:
        return self.user is not None

    def headers(self) -> dict[str, str]:
        """The identity headers to send on to another service for this caller."""
        if self.user is None:
            return {TIER_HEADER: self.tier}
        return {USER_HEADER: self.user, TIER_HEADER: self.tier}


ANONYMOUS = Caller(user=None, tier=ANONYMOUS_TIER)


def caller_from_headers(user: str | None, tier: str | None) -> Caller:
    if not user or not USER_PATTERN.fullmatch(user):
        return ANONYMOUS
    if not tier or not TIER_PATTERN.fullmatch(tier) or tier == ANONYMOUS_TIER:
        tier = SIGNED_IN_DEFAULT_TIER
    return Caller(user=user, tier=tier)


def current_caller() -> Caller:
    """The caller of the request being handled (anonymous outside a request)."""
    if not has_request_context():
        return ANONYMOUS
    return caller_from_headers(request.headers.get(USER_HEADER), request.headers.get(TIER_HEADER))
