"""``python -m library_svc.migrate [upgrade [REV] | downgrade REV | current | check]``.

Runs library-svc's Alembic migrations against ``DATABASE_URL`` (what the Helm hook Job
and ``make run`` call). ``check`` fails when the models and the migrations disagree.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

ALEMBIC_INI = Path(__file__).resolve().parents[2] / "alembic.ini"


def alembic_config(database_url: str | None = None) -> Config:
    config = Config(str(ALEMBIC_INI)) if ALEMBIC_INI.exists() else Config()
    config.set_main_option("script_location", "library_svc:migrations")
    config.attributes["database_url"] = database_url or os.environ.get("DATABASE_URL")
    return config


def upgrade(database_url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str | None, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def main(argv: list[str]) -> int:
    action = argv[0] if argv else "upgrade"
    config = alembic_config()
    if config.attributes["database_url"] and "sqlite" in config.attributes["database_url"]:
        path = config.attributes["database_url"].split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    if action == "upgrade":
        command.upgrade(config, argv[1] if len(argv) > 1 else "head")
    elif action == "downgrade" and len(argv) > 1:
        command.downgrade(config, argv[1])
    elif action == "current":
        command.current(config)
    elif action == "check":
        command.check(config)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
