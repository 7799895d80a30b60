"""The person's Firebase account, through the Firebase Admin SDK.

library-svc keeps the ``tier`` custom claim in step with the entitlements, so the
gateway learns the tier from the ID token with no database call; other custom claims
are kept as they are. Account deletion revokes the person's refresh tokens and then
deletes the user. ``FIREBASE_AUTH_EMULATOR_HOST`` points the SDK at the Auth emulator.
"""

from __future__ import annotations

import threading
from typing import Any

import firebase_admin
import structlog
from firebase_admin import auth
from firebase_admin.exceptions import FirebaseError

from chassis.errors import ApiError

log = structlog.get_logger(__name__)
APP_NAME = "library-svc"
_lock = threading.Lock()


def claims_failed(error: Exception) -> ApiError:
    log.warning("firebase_admin_failed", error=str(error))
    return ApiError(
        503,
        "identity_unavailable",
        "The identity service could not be updated; try again shortly.",
        headers={"Retry-After": "10"},
    )


class FirebaseAccounts:
    def __init__(self, project_id: str | None, enabled: bool = True) -> None:
        self.project_id = project_id
        self.enabled = enabled
        self._app: Any = None

    def app(self) -> Any:
        with _lock:
            if self._app is None:
                try:
                    self._app = firebase_admin.get_app(APP_NAME)
                except ValueError:
                    options = {"projectId": self.project_id} if self.project_id else None
                    self._app = firebase_admin.initialize_app(options=options, name=APP_NAME)
            return self._app

    def set_tier(self, uid: str, tier: str) -> None:
        """Make the ``tier`` claim ``tier``; a user that does not exist has nothing to keep."""
        if not self.enabled:
            return
        try:
            user = auth.get_user(uid, app=self.app())
            claims = dict(user.custom_claims or {})
            if claims.get("tier") == tier:
                return
            claims["tier"] = tier
            auth.set_custom_user_claims(uid, claims, app=self.app())
        except auth.UserNotFoundError:
            return
        except (FirebaseError, ValueError, OSError) as error:
            raise claims_failed(error) from error

    def revoke_and_delete(self, uid: str, *, delete: bool) -> None:
        """Revoke the refresh tokens (and delete the user when ``delete``); gone is done."""
        if not self.enabled:
            return
        try:
            auth.revoke_refresh_tokens(uid, app=self.app())
            if delete:
                auth.delete_user(uid, app=self.app())
        except auth.UserNotFoundError:
            return
        except (FirebaseError, ValueError, OSError) as error:
            raise claims_failed(error) from error
