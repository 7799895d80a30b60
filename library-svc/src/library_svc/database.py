"""The database: one engine per worker process, one session per request.

The app factory runs in each gunicorn worker after fork (``preload_app`` is off), so
the engine and its pool are made there and never shared across a fork. The pool holds
one connection per request thread, checks a connection before use (``pool_pre_ping``:
a database restart costs one reconnect, not a failed request), and reports its state
to Prometheus. SQLite gets foreign keys switched on for every connection, WAL and a
busy timeout, so the same models and migrations behave the same on both.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

from flask import Flask, current_app, g
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool

from library_svc.metrics import POOL_CONNECTIONS, POOL_SIZE
from library_svc.settings import LibrarySettings


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def engine_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (SQLAlchemy's default would be psycopg2)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_db_engine(settings: LibrarySettings, *, pool_metrics: bool = True) -> Engine:
    url = engine_url(settings.database_url)
    options: dict[str, Any] = {
        "poolclass": QueuePool,
        "pool_size": settings.pool_size(),
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout_seconds,
        "pool_pre_ping": True,
    }
    if is_sqlite(url):
        options["connect_args"] = {"timeout": 30, "check_same_thread": False}
    else:
        options["connect_args"] = {"connect_timeout": 5}
        if settings.db_statement_timeout_ms:
            options["connect_args"]["options"] = (
                f"-c statement_timeout={settings.db_statement_timeout_ms}"
            )
    engine = create_engine(url, **options)
    if is_sqlite(url):
        event.listen(engine, "connect", _sqlite_pragmas)
    if pool_metrics:
        watch_pool(engine)
    return engine


_watched: weakref.WeakSet[Engine] = weakref.WeakSet()


def observe_pool(engine: Engine) -> None:
    """Publish the pool's state (after a checkout, and when a request has given its back)."""
    pool: Any = engine.pool
    POOL_CONNECTIONS.labels("checked_out").set(pool.checkedout())
    POOL_CONNECTIONS.labels("idle").set(pool.checkedin())
    POOL_CONNECTIONS.labels("overflow").set(max(0, pool.overflow()))


def watch_pool(engine: Engine, interval: float = 1.0) -> None:
    """Publish the pool's state when requests end and every ``interval`` seconds.

    Pool events fire before the pool's own counts change, so the state is read after
    the fact instead: at the end of each request and by a small publisher thread.
    """
    pool: Any = engine.pool
    POOL_SIZE.set(int(pool.size()))
    _watched.add(engine)
    observe_pool(engine)
    reference = weakref.ref(engine)

    def publish() -> None:
        while (current := reference()) is not None:
            observe_pool(current)
            del current
            time.sleep(interval)

    threading.Thread(target=publish, name="db-pool-metrics", daemon=True).start()


def install_database(app: Flask, engine: Engine) -> None:
    app.extensions["db_engine"] = engine
    app.extensions["db_sessions"] = sessionmaker(engine, expire_on_commit=False)

    @app.teardown_appcontext
    def _close_session(_: BaseException | None) -> None:
        session: Session | None = g.pop("db_session", None)
        if session is not None:
            session.close()
            if engine in _watched:
                observe_pool(engine)


def db() -> Session:
    """This request's session (made on first use, closed when the request ends)."""
    session = g.get("db_session")
    if session is None:
        session = current_app.extensions["db_sessions"]()
        g.db_session = session
    return session


def check_database(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
