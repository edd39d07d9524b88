"""The schema: migrations on fresh SQLite and PostgreSQL databases, and what the store says when
the database is behind, ahead or unreachable."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from adapters.sql_engine import SQLITE_BUSY_TIMEOUT_MS, create_store_engine, masked, store_url
from adapters.sql_models import ACTIVE_INSTANCE_INDEX, Base
from adapters.sql_schema import alembic_config
from adapters.sql_store import SqlRunStore, upgrade_schema
from bot.domain.approval import Decision, Vote
from bot.domain.conversation import ChatThread
from bot.domain.errors import StoreOutdated, StoreUnavailable
from bot.domain.run import ACTIVE_STATES, RunState
from tests.factories import AT, at, make_plan
from tests.hostkit.services import free_port

TABLES_0001 = {"alembic_version", "runs", "run_events", "step_results"}
TABLES_0002 = {"votes", "processed_events", "env_locks", "chat_threads"}
TABLES_0004 = {"scheduler_jobs", "scheduler_lease"}
TABLES = TABLES_0001 | TABLES_0002 | TABLES_0004


@pytest.fixture
def engine(fresh_url: str) -> Iterator[Engine]:
    engine = create_store_engine(fresh_url)
    yield engine
    engine.dispose()


def current_revisions(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads())


def head() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def downgrade(engine: Engine, revision: str) -> None:
    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def test_head_is_0005_on_top_of_0004_0003_0002_and_0001() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert head() == {"0005"}
    assert [r.revision for r in script.walk_revisions()] == [
        "0005",
        "0004",
        "0003",
        "0002",
        "0001",
    ]


def test_upgrade_reaches_head_and_is_idempotent(fresh_url: str, engine: Engine) -> None:
    assert current_revisions(engine) == set()
    assert upgrade_schema(fresh_url) == "0005"
    assert current_revisions(engine) == head()
    assert set(inspect(engine).get_table_names()) == TABLES

    run = SqlRunStore(engine).create(make_plan(), requested_by="@ana", at=AT)
    upgrade_schema(fresh_url)  # again: nothing to do, nothing lost
    assert current_revisions(engine) == head()
    assert SqlRunStore(engine).get(run.id) == run


def test_upgrade_works_from_any_working_directory(
    fresh_url: str, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    upgrade_schema(fresh_url)
    assert current_revisions(engine) == head()


def test_the_models_match_the_migrations(fresh_url: str, engine: Engine) -> None:
    upgrade_schema(fresh_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def active_index_states(engine: Engine) -> set[str]:
    """The states the active-instance index covers, read from the database's own definition."""
    if engine.dialect.name == "sqlite":
        query = "SELECT sql FROM sqlite_master WHERE name = :name"
    else:
        query = (
            "SELECT indexdef FROM pg_indexes"
            " WHERE indexname = :name AND schemaname = current_schema()"
        )
    with engine.connect() as connection:
        definition = connection.execute(text(query), {"name": ACTIVE_INSTANCE_INDEX}).scalar_one()
    assert "UNIQUE" in definition.upper()
    return set(re.findall(r"'(\w+)'", definition))


def test_the_active_instance_index_covers_exactly_the_active_states(
    fresh_url: str, engine: Engine
) -> None:
    # Autogenerate does not compare an index's WHERE clause, so read it from the database.
    upgrade_schema(fresh_url)
    assert active_index_states(engine) == {state.value for state in ACTIVE_STATES}


def test_the_database_itself_refuses_a_second_active_run(fresh_url: str, engine: Engine) -> None:
    upgrade_schema(fresh_url)
    store = SqlRunStore(engine)
    first, second, third = (
        store.create(make_plan(), requested_by="@ana", at=AT).id for _ in range(3)
    )
    move = text("UPDATE runs SET state = :state WHERE id = :id")
    with engine.begin() as connection:  # finished runs may share an instance
        connection.execute(
            move, [{"state": "succeeded", "id": first}, {"state": "failed", "id": third}]
        )
        connection.execute(move, {"state": RunState.RUNNING.value, "id": second})
    for state in sorted(ACTIVE_STATES):
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(move, {"state": state.value, "id": first})


def test_an_empty_database_is_outdated_and_the_message_says_how_to_fix_it(engine: Engine) -> None:
    with pytest.raises(StoreOutdated) as caught:
        SqlRunStore(engine)
    assert "not been set up yet" in str(caught.value)
    assert "`python -m bot db upgrade`" in str(caught.value)


def test_head_goes_down_to_0001_and_up_again_keeping_the_runs(
    fresh_url: str, engine: Engine
) -> None:
    upgrade_schema(fresh_url)
    store = SqlRunStore(engine)
    run = store.create(make_plan(), requested_by="@ana", at=AT)
    store.save_thread(ChatThread(run_id=run.id, channel="C01", plan_ts="1.1", approval_ts="1.2"))
    store.add_vote(
        Vote(run_id=run.id, user="@cy", decision=Decision.APPROVE, plan_digest="d", at=AT, via="")
    )

    downgrade(engine, "0001")
    assert current_revisions(engine) == {"0001"}
    assert set(inspect(engine).get_table_names()) == TABLES_0001
    with pytest.raises(StoreOutdated, match="is at revision 0001, but this bot needs 0005"):
        SqlRunStore(engine)

    assert upgrade_schema(fresh_url) == "0005"
    assert set(inspect(engine).get_table_names()) == TABLES
    store = SqlRunStore(engine)
    assert store.get(run.id) == run  # 0001's tables were left alone
    assert store.thread(run.id) is None  # 0002's were dropped and made again, empty
    assert store.votes(run.id) == []
    store.save_thread(ChatThread(run_id=run.id, channel="C01", plan_ts="1.1", approval_ts="1.2"))
    assert store.run_at("C01", "1.2") == run.id
    assert store.first_sighting("Ev01", AT) is True


def cast(run_id: int, user: str, digest: str, minute: int) -> Vote:
    when = AT + timedelta(minutes=minute)
    return Vote(
        run_id=run_id, user=user, decision=Decision.APPROVE, plan_digest=digest, at=when, via=""
    )


def test_0003_goes_down_to_0002_and_up_again_keeping_one_vote_per_user_and_decision(
    fresh_url: str, engine: Engine
) -> None:
    upgrade_schema(fresh_url)
    store = SqlRunStore(engine)
    run = store.create(make_plan(), requested_by="@ana", at=AT)
    plan, replanned, gate = run.plan.digest, "e" * 64, f"{run.plan.digest}.{'g' * 200}"
    kept = [cast(run.id, "@cy", plan, 1), cast(run.id, "@di", replanned, 3)]
    for vote in (kept[0], cast(run.id, "@cy", gate, 2), cast(run.id, "@di", plan, 2), kept[1]):
        assert store.add_vote(vote) is True

    downgrade(engine, "0002")
    assert current_revisions(engine) == {"0002"}
    assert active_index_states(engine) == {"interrupted", "rolling_back", "running"}
    read = text('SELECT "user", plan_digest FROM votes ORDER BY id')
    with engine.connect() as connection:
        rows = [tuple(row) for row in connection.execute(read)]
    # The gate vote is gone (0002 knows no gates), and of @di's two approvals the later stays.
    assert rows == [("@cy", plan), ("@di", replanned)]
    again = text(
        'INSERT INTO votes (run_id, "user", decision, plan_digest, at, via)'
        " SELECT run_id, \"user\", decision, 'f1', at, via FROM votes WHERE \"user\" = '@cy'"
    )
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(again)  # one vote per (run, user, decision) again

    assert upgrade_schema(fresh_url) == "0005"
    store = SqlRunStore(engine)
    assert store.votes(run.id) == kept  # 0002's votes come through 0003 as they were
    assert store.add_vote(cast(run.id, "@cy", gate, 4)) is True
    assert store.add_vote(cast(run.id, "@cy", gate, 5)) is False
    assert active_index_states(engine) == {state.value for state in ACTIVE_STATES}


def test_0004_goes_down_to_0003_and_up_again_keeping_the_runs_without_start_times(
    fresh_url: str, engine: Engine
) -> None:
    upgrade_schema(fresh_url)
    store = SqlRunStore(engine)
    now = store.create(make_plan(), requested_by="@ana", at=AT)
    later = store.create(
        make_plan(instance="studio-2"), requested_by="@ana", at=AT, starts_at=at(600)
    )
    assert store.get(later.id).starts_at == at(600)

    downgrade(engine, "0003")
    assert current_revisions(engine) == {"0003"}
    assert "holder" not in {c["name"] for c in inspect(engine).get_columns("runs")}
    assert set(inspect(engine).get_table_names()) == TABLES - TABLES_0004
    assert "starts_at" not in {c["name"] for c in inspect(engine).get_columns("runs")}
    assert active_index_states(engine) == {state.value for state in ACTIVE_STATES}

    assert upgrade_schema(fresh_url) == "0005"
    store = SqlRunStore(engine)
    assert store.get(now.id) == now
    assert store.get(later.id).starts_at is None  # 0003 kept no start time to bring back
    assert active_index_states(engine) == {state.value for state in ACTIVE_STATES}


def test_a_database_behind_head_is_outdated(fresh_url: str, engine: Engine) -> None:
    upgrade_schema(fresh_url)
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    with pytest.raises(StoreOutdated, match=r"python -m bot db upgrade"):
        SqlRunStore(engine)

    upgrade_schema(fresh_url)  # and the fix works
    SqlRunStore(engine)


def test_a_database_from_a_newer_bot_is_not_upgraded_blindly(
    fresh_url: str, engine: Engine
) -> None:
    upgrade_schema(fresh_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'from_the_future'"))
    with pytest.raises(StoreOutdated) as caught:
        SqlRunStore(engine)
    assert "from_the_future" in str(caught.value)
    assert "newer" in str(caught.value)
    with pytest.raises(StoreUnavailable, match="from_the_future"):
        upgrade_schema(fresh_url)


def test_an_unreachable_database_is_unavailable_and_its_password_is_not_shown() -> None:
    url = f"postgresql://bot:s3cret-pw@127.0.0.1:{free_port()}/bot_test?connect_timeout=2"
    for attempt in (lambda: SqlRunStore(create_store_engine(url)), lambda: upgrade_schema(url)):
        with pytest.raises(StoreUnavailable) as caught:
            attempt()
        assert "s3cret-pw" not in str(caught.value)
        assert "bot:***@127.0.0.1" in str(caught.value)


def test_urls_default_to_sqlite_under_var_and_plain_postgresql_uses_psycopg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert store_url("postgresql://bot:pw@db/bot").drivername == "postgresql+psycopg"
    assert store_url("postgres://bot:pw@db/bot").drivername == "postgresql+psycopg"
    assert masked("postgresql://bot:pw@db/bot") == "postgresql://bot:***@db/bot"
    with pytest.raises(StoreUnavailable, match="not supported"):
        store_url("mysql://bot:pw@db/bot")

    monkeypatch.chdir(tmp_path)
    engine = create_store_engine()
    try:
        with engine.connect() as connection:
            pragmas = {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout")
            }
    finally:
        engine.dispose()
    assert (tmp_path / "var" / "bot.db").is_file()
    assert pragmas["journal_mode"] == "wal"
    assert pragmas["foreign_keys"] == 1
    assert pragmas["busy_timeout"] == SQLITE_BUSY_TIMEOUT_MS


def test_0005_goes_down_to_0004_and_up_again_keeping_a_running_run_without_its_claim(
    fresh_url: str, engine: Engine
) -> None:
    upgrade_schema(fresh_url)
    store = SqlRunStore(engine, holder="bot-a")
    run = store.create(make_plan(), requested_by="@ana", at=AT)
    for before, after in (
        (RunState.PLANNED, RunState.AWAITING_APPROVAL),
        (RunState.AWAITING_APPROVAL, RunState.APPROVED),
        (RunState.APPROVED, RunState.RUNNING),
    ):
        store.transition(run.id, before, after, at=AT, actor="@bo")
    assert store.lapsed(at=at(0.1)) == []

    downgrade(engine, "0004")
    assert "held_until" not in {c["name"] for c in inspect(engine).get_columns("runs")}
    assert upgrade_schema(fresh_url) == "0005"
    # the claim is gone with its columns: the next bot to look takes the run over
    [lapsed] = SqlRunStore(engine, holder="bot-b").lapsed(at=at(0.1))
    assert (lapsed.id, lapsed.state) == (run.id, RunState.RUNNING)
