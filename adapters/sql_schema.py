"""The run store's schema: Alembic migrations run from code, and the check that it is current.

Neither needs `alembic.ini` nor a particular working directory: the migrations are found next to
this package, and `env.py` migrates on the connection handed to it.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from adapters.sql_engine import create_store_engine, describe, masked
from bot.domain.errors import StoreOutdated, StoreUnavailable

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"
UPGRADE_FIX = "Run `python -m bot db upgrade`."


def alembic_config() -> Config:
    """Alembic's configuration without an ini file, so it works from any working directory."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade_schema(url: str | URL | None = None, revision: str = "head") -> str:
    """Bring the database at `url` to `revision` (what `python -m bot db upgrade` runs).

    Returns the revision reached. Idempotent: a database already there is left as it is.
    """
    engine = create_store_engine(url)
    try:
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection  # env.py migrates on this connection
            command.upgrade(config, revision)
            reached = MigrationContext.configure(connection).get_current_heads()
            return ", ".join(sorted(reached)) or "base"
    except (SQLAlchemyError, CommandError) as exc:
        raise StoreUnavailable(
            f"Upgrading the database {masked(engine.url)} failed: {describe(exc, engine.url)}"
        ) from exc
    finally:
        engine.dispose()


def check_schema(engine: Engine) -> None:
    """Raise `StoreOutdated` unless the database is at the revision this code was written for."""
    script = ScriptDirectory.from_config(alembic_config())
    heads = set(script.get_heads())
    try:
        with engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
    except SQLAlchemyError as exc:
        raise StoreUnavailable(
            f"The database {masked(engine.url)} cannot be reached: {describe(exc, engine.url)}"
        ) from exc
    if current == heads:
        return
    where = masked(engine.url)
    needed = ", ".join(sorted(heads))
    if not current:
        raise StoreOutdated(f"The database {where} has not been set up yet. {UPGRADE_FIX}")
    known = {revision.revision for revision in script.walk_revisions()}
    found = ", ".join(sorted(current))
    if not current <= known:
        raise StoreOutdated(
            f"The database {where} is at revision {found}, which this version of the bot does not "
            f"know (it needs {needed}): a newer bot has migrated it. Run that newer version."
        )
    raise StoreOutdated(
        f"The database {where} is at revision {found}, but this bot needs {needed}. {UPGRADE_FIX}"
    )
