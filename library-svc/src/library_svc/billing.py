"""``POST /v1/billing/events``: the purchase provider's webhooks (RevenueCat's format).

Authorised by the shared secret RevenueCat sends verbatim in ``Authorization``
(``BILLING_WEBHOOK_AUTHORIZATION``), compared in constant time; a wrong one is 401 and
changes nothing. Events are deduplicated by ``event.id`` and kept in
``billing_events``. Each applies to the entitlements it names
(``event.entitlement_ids``) only when it is newer (``event_timestamp_ms``) than the
last event applied to that entitlement, so events delivered late or twice never undo
a newer state. Access ends on expiration, not cancellation: a CANCELLATION only stops
renewal, access lasts until ``expiration_at_ms``; an EXPIRATION ends it.

After a change the person's ``tier`` claim is set in Firebase; if that fails the answer
is 503 so RevenueCat retries, and the retry (a duplicate) sets the claim again.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Any

import structlog
from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select, update

from chassis.caller import USER_PATTERN
from chassis.errors import ApiError
from library_svc.access import deletion_of, lock_person
from library_svc.bodies import json_object
from library_svc.claims import FirebaseAccounts
from library_svc.database import db
from library_svc.entitlements import tier_of
from library_svc.metrics import BILLING_EVENTS
from library_svc.models import BillingEvent, Entitlement, Person, utcnow
from library_svc.settings import LibrarySettings

log = structlog.get_logger(__name__)
blueprint = Blueprint("billing", __name__)
MAX_EVENT_BYTES = 64 * 1024
GRANTING = frozenset(
    {
        "INITIAL_PURCHASE",
        "RENEWAL",
        "PRODUCT_CHANGE",
        "UNCANCELLATION",
        "NON_RENEWING_PURCHASE",
        "SUBSCRIPTION_EXTENDED",
        "TEMPORARY_ENTITLEMENT_GRANT",
        "REFUND_REVERSED",
    }
)
STOPS_RENEWAL = frozenset({"CANCELLATION", "SUBSCRIPTION_PAUSED"})
APPLIED = GRANTING | STOPS_RENEWAL | {"BILLING_ISSUE", "EXPIRATION"}


def settings() -> LibrarySettings:
    return current_app.config["SETTINGS"]


def accounts() -> FirebaseAccounts:
    return current_app.extensions["firebase"]


def authorised() -> None:
    expected = settings().billing_webhook_authorization
    if expected is None:
        raise ApiError(503, "billing_not_configured", "Billing webhooks are not configured.")
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
        raise ApiError(401, "invalid_webhook_authorization", "The webhook secret is wrong.")


def moment(ms: Any) -> datetime | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(int(ms) / 1000, UTC)


def apply(entitlement: Entitlement, event: dict[str, Any], kind: str, at_ms: int) -> None:
    expires = moment(event.get("expiration_at_ms"))
    if kind in GRANTING:
        entitlement.expires_at = expires
        entitlement.will_renew = kind != "NON_RENEWING_PURCHASE"
        entitlement.billing_issue = False
    elif kind in STOPS_RENEWAL:
        entitlement.will_renew = False
        if expires is not None:
            entitlement.expires_at = expires
    elif kind == "BILLING_ISSUE":
        entitlement.billing_issue = True
        if expires is not None:
            entitlement.expires_at = expires
    else:  # EXPIRATION
        entitlement.expires_at = expires
        entitlement.will_renew = False
    entitlement.product_id = event.get("new_product_id") or event.get("product_id")
    entitlement.store = event.get("store")
    entitlement.last_event_type = kind
    entitlement.last_event_at_ms = at_ms
    entitlement.updated_at = utcnow()


def entitlement_ids(event: dict[str, Any]) -> list[str]:
    ids = event.get("entitlement_ids")
    if isinstance(ids, list):
        return [str(item) for item in ids if item]
    single = event.get("entitlement_id")
    return [str(single)] if single else []


def keep_claim_in_step(uid: str) -> str:
    session = db()
    tier = tier_of(session, uid, settings().pro_entitlement_id)
    person = session.scalar(select(Person).where(Person.uid == uid))
    if person is not None and person.claimed_tier == tier:
        return tier
    session.rollback()
    accounts().set_tier(uid, tier)
    session.execute(update(Person).where(Person.uid == uid).values(claimed_tier=tier))
    session.commit()
    return tier


def answer(status: str, kind: str, tier: str | None = None) -> ResponseReturnValue:
    BILLING_EVENTS.labels(kind, status).inc()
    return jsonify(status=status, tier=tier)


@blueprint.post("/v1/billing/events")
def billing_event() -> ResponseReturnValue:
    authorised()
    event = json_object(MAX_EVENT_BYTES).get("event")
    if not isinstance(event, dict) or not all(
        isinstance(event.get(key), str) and event.get(key) for key in ("id", "type")
    ):
        raise ApiError(422, "invalid_event", "An event needs event.id and event.type.")
    kind = event["type"]
    uid = event.get("app_user_id")
    if kind == "TEST" or not isinstance(uid, str) or not USER_PATTERN.fullmatch(uid):
        return answer("ignored", kind)  # test events and anonymous store ids
    session = db()
    if deletion_of(session, uid) is not None:
        return answer("ignored", kind)
    at_ms = int(event.get("event_timestamp_ms") or event.get("purchased_at_ms") or 0)
    if session.get(BillingEvent, event["id"]) is not None:
        session.rollback()
        return answer("duplicate", kind, keep_claim_in_step(uid))
    lock_person(session, uid)
    if session.get(BillingEvent, event["id"]) is not None:
        session.rollback()
        return answer("duplicate", kind, keep_claim_in_step(uid))
    session.add(
        BillingEvent(
            id=event["id"],
            owner=uid,
            type=kind,
            event_at_ms=at_ms,
            product_id=event.get("product_id"),
            store=event.get("store"),
            transaction_id=event.get("transaction_id"),
            price=event.get("price"),
            currency=event.get("currency"),
            payload=event,
        )
    )
    for entitlement_id in entitlement_ids(event) if kind in APPLIED else []:
        entitlement = session.get(Entitlement, (uid, entitlement_id))
        if entitlement is None:
            entitlement = Entitlement(
                owner=uid,
                entitlement_id=entitlement_id,
                last_event_type="",
                last_event_at_ms=-1,
                will_renew=True,
                billing_issue=False,
            )
            session.add(entitlement)
        if at_ms >= entitlement.last_event_at_ms:
            apply(entitlement, event, kind, at_ms)
        else:
            log.info("billing_event_older_than_state", event_id=event["id"], type=kind)
    session.commit()
    return answer("applied", kind, keep_claim_in_step(uid))
