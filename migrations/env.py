"""Alembic's environment: migrates the bot's database on SQLite or PostgreSQL.

`upgrade_schema()` hands in its own connection through `config.attributes["connection"]`; the
`alembic` command line builds an engine the same way the bot does, so SQLite gets the same
settings either way.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from adapters.sql_engine import create_store_engine, store_url
from adapters.sql_models import Base

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None and config.attributes.get("connection") is None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str | None:
    given = context.get_x_argument(as_dictionary=True).get("url")
    return given or os.environ.get("DATABASE_URL") or config.get_main_option("sqlalchemy.url")


def _migrate(connection: Connection) -> None:
    # SQLite alters tables by copying them: autogenerate must write batch operations for it.
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    url = store_url(_url())
    context.configure(
        url=url.render_as_string(hide_password=False),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.get_backend_name() == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        _migrate(given)
        return
    engine = create_store_engine(_url())
    try:
        with engine.begin() as connection:
            _migrate(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
