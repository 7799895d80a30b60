"""The migrations build the models' schema on both databases, and undo it cleanly."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from library_svc.database import engine_url
from library_svc.migrate import downgrade, upgrade
from library_svc.models import Base
from testbed.postgres import PostgresServer


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database(f"library_migrations_{uuid.uuid4().hex[:8]}")


def tables(url: str) -> set[str]:
    engine = create_engine(engine_url(url))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_matches_the_models_and_downgrade_removes_everything(
    empty_database: str,
) -> None:
    upgrade(empty_database)
    assert set(Base.metadata.tables) <= tables(empty_database)
    engine = create_engine(engine_url(empty_database))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "render_as_batch": True}
            )
            assert compare_metadata(context, Base.metadata) == []
            version = connection.execute(text("SELECT version_num FROM alembic_version"))
            assert version.scalar_one() == "0001"
    finally:
        engine.dispose()

    downgrade(empty_database, "base")
    assert tables(empty_database) <= {"alembic_version"}
    upgrade(empty_database)
    assert set(Base.metadata.tables) <= tables(empty_database)


def test_sqlite_enforces_foreign_keys(tmp_path: Path) -> None:
    from library_svc.database import create_db_engine
    from library_svc.settings import LibrarySettings

    url = f"sqlite:///{tmp_path / 'fk.db'}"
    upgrade(url)
    engine = create_db_engine(LibrarySettings(database_url=url), pool_metrics=False)
    try:
        with pytest.raises(Exception, match="FOREIGN KEY"), engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO drafts (owner, id, version, title, body, created_at, "
                    "updated_at, change_seq) VALUES ('nobody', 'x', 1, '', '', "
                    "'2026-01-01', '2026-01-01', 1)"
                )
            )
    finally:
        engine.dispose()
