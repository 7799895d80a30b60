"""library-svc application factory.

Runs in each gunicorn worker after fork, so the database engine (and its pool) belongs
to one process. Every ``/v1`` route needs a signed-in caller (the gateway forwards the
identity headers), except the purchase provider's webhook, which has its own secret.
"""

from __future__ import annotations

from flask import Flask, Response, request
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from chassis.app import create_service_app
from chassis.errors import error_response
from chassis.health import add_readiness_check
from chassis.settings import load_settings
from chassis.tiers import TiersError, load_tiers
from library_svc.access import refuse_if_deleted, signed_in_user
from library_svc.account import blueprint as account_blueprint
from library_svc.billing import blueprint as billing_blueprint
from library_svc.claims import FirebaseAccounts
from library_svc.database import check_database, create_db_engine, db, install_database
from library_svc.drafts import blueprint as drafts_blueprint
from library_svc.metrics import declare_series
from library_svc.page_tokens import PageTokens
from library_svc.settings import LibrarySettings
from library_svc.snaps import blueprint as snaps_blueprint
from library_svc.sweep import start_periodic_sweep
from library_svc.sync import blueprint as sync_blueprint
from library_svc.uploads_client import UploadsClient

OPEN_ROUTES = frozenset({"/v1/billing/events"})
RESUMABLE = frozenset({("DELETE", "/v1/me")})


def instrument(engine: Engine) -> None:
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    SQLAlchemyInstrumentor().instrument(engine=engine, enable_commenter=False)


def create_app(settings: LibrarySettings | None = None, engine: Engine | None = None) -> Flask:
    settings = settings or load_settings(LibrarySettings)
    app = create_service_app(settings, __name__)
    engine = engine or create_db_engine(settings)
    if not settings.otel_sdk_disabled:
        instrument(engine)
    install_database(app, engine)
    app.extensions["page_tokens"] = PageTokens(settings.page_token_secret.get_secret_value())
    try:
        app.extensions["tiers"] = load_tiers(settings.tiers_file)
    except TiersError as error:
        raise SystemExit(f"invalid setting TIERS_FILE: {error}") from None
    app.extensions["uploads"] = UploadsClient(
        settings.upload_svc_url, settings.upload_svc_timeout_seconds
    )
    app.extensions["firebase"] = FirebaseAccounts(
        settings.firebase_project_id, settings.firebase_claims_enabled
    )
    for blueprint in (
        drafts_blueprint,
        snaps_blueprint,
        sync_blueprint,
        billing_blueprint,
        account_blueprint,
    ):
        app.register_blueprint(blueprint)

    @app.before_request
    def _signed_in_and_not_deleted() -> None:
        path = request.path
        if not path.startswith(("/v1/", "/internal/")) or path in OPEN_ROUTES:
            return
        uid = signed_in_user()
        if (request.method, path) not in RESUMABLE:
            refuse_if_deleted(db(), uid)

    @app.errorhandler(OperationalError)
    @app.errorhandler(PoolTimeout)
    def _database_unavailable(error: Exception) -> Response:
        app.logger.warning("database_unavailable: %s", error)
        return error_response(
            503,
            "database_unavailable",
            "The database is unavailable; try again shortly.",
            headers={"Retry-After": "2"},
        )

    add_readiness_check(app, "database", lambda: check_database(engine))
    if settings.sweep_interval_seconds > 0:
        start_periodic_sweep(app, settings.sweep_interval_seconds)
    declare_series()
    return app
