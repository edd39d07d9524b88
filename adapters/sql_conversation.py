"""The conversation ports on SQL: `VoteStore`, `EventLog`, `LockStore` and `ThreadStore`.

`SqlConversationMixin` is part of `SqlRunStore` (one store, one engine, one schema); it lives here
to keep each module small. Like the rest of the store, every method is one transaction that commits
before it returns. What must hold across processes (one vote per user, decision and digest, one
sighting per event, one lock per environment) is decided by the database's unique keys inside a
single INSERT ... ON CONFLICT statement, never by a read followed by a write.

Whether such an INSERT added its row is read from its RETURNING clause, not from `rowcount`:
psycopg reports -1 for a statement that returns rows, and SQLAlchemy adds RETURNING by itself to
fetch a generated primary key.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime

from sqlalchemy import Engine, delete, select, union_all
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from adapters.run_store_rules import as_utc, unknown_run
from adapters.sql_models import Base, ChatThreadRow, EnvLockRow, ProcessedEventRow, RunRow, VoteRow
from bot.domain.approval import Decision, Vote
from bot.domain.conversation import ChatThread, EnvLock


class SqlConversationMixin:
    """Votes, handled events, environment locks and chat threads, for `SqlRunStore`.

    Raises `StoreUnavailable` whenever the database fails, and `UnknownRun` for votes and threads
    of a run that does not exist.
    """

    # Set by `SqlRunStore.__init__`.
    _engine: Engine
    _reads: sessionmaker[Session]
    _writes: sessionmaker[Session]

    def _failures(self, doing: str) -> AbstractContextManager[None]:
        raise NotImplementedError  # `SqlRunStore` translates the database's errors

    # VoteStore

    def add_vote(self, vote: Vote) -> bool:
        values = {
            "run_id": vote.run_id,
            "user": vote.user,
            "decision": vote.decision.value,
            "plan_digest": vote.plan_digest,
            "at": as_utc(vote.at),
            "via": vote.via,
        }
        doing = f"recording {vote.user}'s {vote.decision.value} of run #{vote.run_id}"
        with self._failures(doing), self._writes.begin() as session:
            _check_run(session, vote.run_id)
            insert = self._insert(VoteRow).values(values)
            added = session.execute(
                insert.on_conflict_do_nothing(
                    index_elements=["run_id", "user", "decision", "plan_digest"]
                ).returning(VoteRow.id)
            )
            return added.first() is not None

    def remove_vote(self, run_id: int, user: str, decision: Decision, plan_digest: str) -> bool:
        doing = f"withdrawing {user}'s {decision.value} of run #{run_id} ({plan_digest})"
        with self._failures(doing), self._writes.begin() as session:
            _check_run(session, run_id)
            removed = session.connection().execute(
                delete(VoteRow).where(
                    VoteRow.run_id == run_id,
                    VoteRow.user == user,
                    VoteRow.decision == decision.value,
                    VoteRow.plan_digest == plan_digest,
                )
            )
            return removed.rowcount == 1

    def votes(self, run_id: int) -> list[Vote]:
        with self._failures(f"reading the votes on run #{run_id}"), self._reads.begin() as session:
            _check_run(session, run_id)
            rows = session.scalars(
                select(VoteRow).where(VoteRow.run_id == run_id).order_by(VoteRow.at, VoteRow.id)
            )
            return [_to_vote(row) for row in rows]

    # EventLog

    def first_sighting(self, key: str, at: datetime) -> bool:
        insert = self._insert(ProcessedEventRow).values(key=key, seen_at=as_utc(at))
        with self._failures(f"noting event {key!r}"), self._writes.begin() as session:
            # A concurrent insert of the same key waits for ours to commit (PostgreSQL) or cannot
            # start before it does (SQLite's BEGIN IMMEDIATE), then inserts nothing.
            noted = session.execute(
                insert.on_conflict_do_nothing().returning(ProcessedEventRow.key)
            )
            return noted.first() is not None

    # LockStore

    def lock(self, lock: EnvLock) -> EnvLock:
        insert = self._insert(EnvLockRow).values(
            environment=lock.environment,
            locked_by=lock.locked_by,
            reason=lock.reason,
            at=as_utc(lock.at),
        )
        # On a conflict, an update that sets nothing new: unlike DO NOTHING it makes the statement
        # return the lock that stands, in the same atomic step. A second read could find nothing
        # (unlocked meanwhile) or a different lock.
        upsert = insert.on_conflict_do_update(
            index_elements=["environment"], set_={"locked_by": EnvLockRow.locked_by}
        ).returning(EnvLockRow)
        with self._failures(f"locking {lock.environment}"), self._writes.begin() as session:
            return _to_lock(session.scalars(upsert).one())

    def unlock(self, environment: str) -> EnvLock | None:
        # DELETE ... RETURNING: of two concurrent unlocks, only the one that removed the row gets
        # the lock back.
        remove = delete(EnvLockRow).where(EnvLockRow.environment == environment)
        with self._failures(f"unlocking {environment}"), self._writes.begin() as session:
            removed = session.scalars(remove.returning(EnvLockRow)).one_or_none()
            return _to_lock(removed) if removed is not None else None

    def locks(self) -> list[EnvLock]:
        with self._failures("listing environment locks"), self._reads.begin() as session:
            rows = session.scalars(select(EnvLockRow).order_by(EnvLockRow.environment))
            return [_to_lock(row) for row in rows]

    # ThreadStore

    def save_thread(self, thread: ChatThread) -> None:
        values = {
            "run_id": thread.run_id,
            "channel": thread.channel,
            "plan_ts": thread.plan_ts,
            "approval_ts": thread.approval_ts,
            "progress_ts": thread.progress_ts,
        }
        insert = self._insert(ChatThreadRow).values(values)
        upsert = insert.on_conflict_do_update(
            index_elements=["run_id"],
            set_={name: insert.excluded[name] for name in values if name != "run_id"},
        )
        doing = f"saving the thread of run #{thread.run_id}"
        with self._failures(doing), self._writes.begin() as session:
            _check_run(session, thread.run_id)
            session.execute(upsert)

    def thread(self, run_id: int) -> ChatThread | None:
        with self._failures(f"reading the thread of run #{run_id}"), self._reads.begin() as session:
            _check_run(session, run_id)
            row = session.get(ChatThreadRow, run_id)
            return _to_thread(row) if row is not None else None

    def run_at(self, channel: str, ts: str) -> int | None:
        if not ts:
            return None  # "" means "no such message" in a thread, not a message to look up
        # Two lookups, each answered by its own (channel, ts) index. Written as one OR, the plan
        # depends on the planner combining both indexes; PostgreSQL sometimes reads the channel's
        # whole range of one index and filters it instead, which grows with the history.
        by_plan = select(ChatThreadRow.run_id).where(
            ChatThreadRow.channel == channel, ChatThreadRow.plan_ts == ts
        )
        by_approval = select(ChatThreadRow.run_id).where(
            ChatThreadRow.channel == channel, ChatThreadRow.approval_ts == ts
        )
        query = union_all(by_plan, by_approval).order_by("run_id").limit(1)
        doing = f"finding the run of message {ts} in {channel}"
        with self._failures(doing), self._reads.begin() as session:
            return session.scalars(query).first()

    def _insert(self, model: type[Base]) -> postgresql.Insert | sqlite.Insert:
        """An INSERT in this database's dialect: both spell ON CONFLICT, each in its own class."""
        make = postgresql.insert if self._engine.dialect.name == "postgresql" else sqlite.insert
        return make(model)


def _check_run(session: Session, run_id: int) -> None:
    """Raise `UnknownRun` unless the run exists; reads its id only, not its plan."""
    if session.scalar(select(RunRow.id).where(RunRow.id == run_id)) is None:
        raise unknown_run(run_id)


def _to_vote(row: VoteRow) -> Vote:
    return Vote(
        run_id=row.run_id,
        user=row.user,
        decision=Decision(row.decision),
        plan_digest=row.plan_digest,
        at=row.at,
        via=row.via,
    )


def _to_lock(row: EnvLockRow) -> EnvLock:
    return EnvLock(
        environment=row.environment, locked_by=row.locked_by, reason=row.reason, at=row.at
    )


def _to_thread(row: ChatThreadRow) -> ChatThread:
    return ChatThread(
        run_id=row.run_id,
        channel=row.channel,
        plan_ts=row.plan_ts,
        approval_ts=row.approval_ts,
        progress_ts=row.progress_ts,
    )
