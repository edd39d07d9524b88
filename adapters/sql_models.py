"""The run store's tables, as typed SQLAlchemy models. `migrations/` creates exactly these.

Domain records that nest (the plan, a command's result, captures, verifications) are kept as JSON
documents written by `adapters.record_json`; the columns around them are what queries filter on.
The conversation around runs (votes, handled events, environment locks, chat threads) is flat and
kept in plain columns.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    Unicode,
    UniqueConstraint,
    column,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bot.domain.run import ACTIVE_STATES

# Fixed constraint names, so migrations can name what they alter (SQLite's batch mode needs them)
# and both databases end up with the same names.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ACTIVE_INSTANCE_INDEX = "ux_runs_active_instance"
PLAN_DIGEST_LENGTH = 64
STEP_ID_LENGTH = 200
VOTE_DIGEST_LENGTH = PLAN_DIGEST_LENGTH + 1 + STEP_ID_LENGTH


def active_states_clause() -> Any:
    """`state IN (<active states>)`: the rows the one-active-run-per-instance index covers.

    Changing `ACTIVE_STATES` in the domain therefore needs a migration that recreates the index.
    """
    return column("state").in_(sorted(state.value for state in ACTIVE_STATES))


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC timestamp on every database.

    PostgreSQL keeps the instant (timestamptz); SQLite has no time zones, so we store UTC without
    an offset and attach UTC again on the way out. Naive values are refused: their zone is a guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"refusing to store the naive timestamp {value.isoformat()}")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """The declarative base of the bot's own tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class RunRow(Base):
    """One run. The plan is the JSON document; the columns beside it are copies for queries."""

    __tablename__ = "runs"
    # AUTOINCREMENT on SQLite: an id a user once typed (`status 42`) is never given to another run.
    __table_args__ = (
        Index(
            ACTIVE_INSTANCE_INDEX,
            "instance_key",
            unique=True,
            sqlite_where=active_states_clause(),
            postgresql_where=active_states_clause(),
        ),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    product: Mapped[str] = mapped_column(String(200))
    environment: Mapped[str] = mapped_column(String(200))
    instance: Mapped[str] = mapped_column(String(200))
    instance_key: Mapped[str] = mapped_column(String(401))  # "<environment>/<instance>"
    strategy: Mapped[str] = mapped_column(String(200))
    from_version: Mapped[str] = mapped_column(String(100))
    to_version: Mapped[str] = mapped_column(String(100))
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    plan_digest: Mapped[str] = mapped_column(String(PLAN_DIGEST_LENGTH))
    state: Mapped[str] = mapped_column(String(32), index=True)
    requested_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    starts_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)  # scheduled runs
    # The process that executes the run (running, rolling back), and when its claim runs out.
    holder: Mapped[str | None] = mapped_column(String(200))
    held_until: Mapped[datetime | None] = mapped_column(UtcDateTime)


class RunEventRow(Base):
    """One transition of one run: the audit trail, in insertion order."""

    __tablename__ = "run_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    from_state: Mapped[str | None] = mapped_column(String(32))
    to_state: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)


class StepResultRow(Base):
    """What one step of one run did; replaced in place as the step goes from started to done."""

    __tablename__ = "step_results"
    __table_args__ = (UniqueConstraint("run_id", "phase", "step_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    phase: Mapped[str] = mapped_column(String(16))
    step_id: Mapped[str] = mapped_column(String(STEP_ID_LENGTH))
    number: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    captures: Mapped[dict[str, str]] = mapped_column(JSON)
    verifications: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    error: Mapped[str] = mapped_column(Text)


class VoteRow(Base):
    """One user's approve or reject of one plan or gate of one run; the id keeps the order votes
    were cast in."""

    __tablename__ = "votes"
    # Leads with run_id, so it also serves `votes(run_id)`. A user may hold both decisions, and
    # the same decision on the plan and on each of its gates.
    __table_args__ = (UniqueConstraint("run_id", "user", "decision", "plan_digest"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    user: Mapped[str] = mapped_column(String(200))
    decision: Mapped[str] = mapped_column(String(16))
    # The plan's digest, or `<plan digest>.<gate step id>`: as wide as `runs.plan_digest`, a dot
    # and `step_results.step_id`.
    plan_digest: Mapped[str] = mapped_column(String(VOTE_DIGEST_LENGTH))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    via: Mapped[str] = mapped_column(String(32))


class ProcessedEventRow(Base):
    """An incoming event (Slack event id, action, retry) that was handled once already."""

    __tablename__ = "processed_events"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UtcDateTime)


class EnvLockRow(Base):
    """An environment closed to upgrades; the primary key makes it one lock per environment."""

    __tablename__ = "env_locks"

    environment: Mapped[str] = mapped_column(String(200), primary_key=True)
    locked_by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class ChatThreadRow(Base):
    """Where one run's messages are. A missing message is an empty string, as in `ChatThread`."""

    __tablename__ = "chat_threads"
    # Button clicks and reactions name a message by (channel, ts): one index per message kind.
    __table_args__ = (Index(None, "channel", "plan_ts"), Index(None, "channel", "approval_ts"))

    run_id: Mapped[int] = mapped_column(
        ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    channel: Mapped[str] = mapped_column(String(64))
    plan_ts: Mapped[str] = mapped_column(String(64))
    approval_ts: Mapped[str] = mapped_column(String(64))
    progress_ts: Mapped[str] = mapped_column(String(64))


SCHEDULER_JOBS_TABLE = "scheduler_jobs"


class SchedulerJobRow(Base):
    """APScheduler's own job table (`SQLAlchemyJobStore`), created by our migrations so the schema
    has one owner. The columns are the ones APScheduler 3 defines; it writes and reads them."""

    __tablename__ = SCHEDULER_JOBS_TABLE

    id: Mapped[str] = mapped_column(Unicode(191), primary_key=True)
    next_run_time: Mapped[float | None] = mapped_column(Float(25), index=True)
    job_state: Mapped[bytes] = mapped_column(LargeBinary)


class SchedulerLeaseRow(Base):
    """Who schedules: the one process holding the lease until `expires_at`, renewing it."""

    __tablename__ = "scheduler_lease"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    since: Mapped[datetime] = mapped_column(UtcDateTime)  # when this holder took it
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
