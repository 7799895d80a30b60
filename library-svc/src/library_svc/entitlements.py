"""A person's tier, derived from their entitlements (the source of truth).

An entitlement grants access until it expires: cancelling only stops renewal, so a
cancelled subscription stays pro until its ``expires_at``; an expired one (or one whose
latest event is an expiration) grants nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from library_svc.models import Entitlement, utcnow

EXPIRATION = "EXPIRATION"


def active(entitlement: Entitlement, now: datetime | None = None) -> bool:
    if entitlement.last_event_type == EXPIRATION:
        return False
    return entitlement.expires_at is None or entitlement.expires_at > (now or utcnow())


def entitlements_of(session: Session, uid: str) -> list[Entitlement]:
    return list(
        session.scalars(
            select(Entitlement)
            .where(Entitlement.owner == uid)
            .order_by(Entitlement.entitlement_id)
            .execution_options(populate_existing=True)
        )
    )


def tier_of(session: Session, uid: str, pro_entitlement_id: str) -> str:
    for entitlement in entitlements_of(session, uid):
        if entitlement.entitlement_id == pro_entitlement_id and active(entitlement):
            return "pro"
    return "free"


def entitlement_json(entitlement: Entitlement) -> dict[str, Any]:
    expires = entitlement.expires_at
    return {
        "id": entitlement.entitlement_id,
        "product_id": entitlement.product_id,
        "store": entitlement.store,
        "active": active(entitlement),
        "expires_at": expires.isoformat().replace("+00:00", "Z") if expires else None,
        "will_renew": entitlement.will_renew,
        "billing_issue": entitlement.billing_issue,
    }
