"""Alembic environment: DATABASE_URL, the models' metadata, batch mode for SQLite.

Migrations are written expand-then-contract: a release only adds (tables, nullable
columns, indexes) so the pods still running the previous release keep working while
the migration Job runs; what the new code no longer reads is dropped in a later
release's migration, once no old pod is left.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, event

from library_svc.database import _sqlite_pragmas, engine_url, is_sqlite
from library_svc.models import Base

config = context.config


def database_url() -> str:
    return (
        config.attributes.get("database_url")
        or os.environ.get("DATABASE_URL")
        or "sqlite:///var/library.db"
    )


def run_migrations_offline() -> None:
    url = engine_url(database_url())
    context.configure(
        url=url,
        target_metadata=Base.metadata,
        literal_binds=True,
        render_as_batch=is_sqlite(url),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = engine_url(database_url())
    engine = create_engine(url)
    if is_sqlite(url):
        event.listen(engine, "connect", _sqlite_pragmas)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=is_sqlite(url),
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
