"""`SqlRunStore`: the `RunStore` port on SQLite or PostgreSQL (`upgrade_schema` comes along),
and through `SqlConversationMixin` the `VoteStore`, `EventLog`, `LockStore` and `ThreadStore` ports.

Every method runs in one transaction that commits before it returns; threads that write at the
same moment share one (`adapters/group_commit.py`), each writing as if after the other. The rule
"one active run per instance" is a partial unique index: a move it refuses is undone, and the
run in the way is read to be named.

A run in a held state (running, rolling back) carries its holder, the process executing it, and
when that claim runs out. The holder renews it before each step and on a heartbeat; another
process takes a run over (as interrupted) only once its claim has run out, in one compare-and-set
statement, so two processes never both execute a run. Times are the processes' own clocks, as for
the scheduling lease: hosts sharing a database keep their clocks in step.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Row,
    bindparam,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import Executable

from adapters import record_json
from adapters.group_commit import GroupCommit
from adapters.run_store_rules import (
    as_utc,
    creation_events,
    instance_busy,
    moved_meanwhile,
    require_limit,
    unknown_run,
)
from adapters.scheduler_lease import holder_name
from adapters.sql_conversation import SqlConversationMixin
from adapters.sql_engine import WRITE_OPTION, create_store_engine, describe, masked
from adapters.sql_models import RunEventRow, RunRow, StepResultRow
from adapters.sql_schema import alembic_config, check_schema, upgrade_schema
from bot.domain.errors import RunTakenOver, StoreUnavailable
from bot.domain.plan import Plan
from bot.domain.run import (
    ACTIVE_STATES,
    HELD_STATES,
    Phase,
    Run,
    RunEvent,
    RunState,
    StepResult,
    StepStatus,
    check_transition,
)

__all__ = ["SqlRunStore", "alembic_config", "check_schema", "upgrade_schema"]

_ACTIVE = sorted(state.value for state in ACTIVE_STATES)
_HELD = sorted(state.value for state in HELD_STATES)
_STEP_COLUMNS = (
    "run_id",
    "phase",
    "step_id",
    "number",
    "title",
    "status",
    "started_at",
    "finished_at",
    "result",
    "captures",
    "verifications",
    "error",
)
CLAIM = timedelta(seconds=30)  # how long a claim on a run lasts unless its holder renews it


class SqlRunStore(SqlConversationMixin):
    """Runs, their audit trail, step results and the conversation around them (votes, handled
    events, environment locks, chat threads) in the bot's database (SQLite or PostgreSQL).

    Raises `StoreOutdated` at construction when the schema is not at head, and `StoreUnavailable`
    whenever the database fails; the URL in messages never shows the password. `holder` names
    this process in the claims on the runs it executes, each good for `claim` unless renewed.
    """

    def __init__(
        self, database: Engine | str | URL, *, holder: str | None = None, claim: timedelta = CLAIM
    ) -> None:
        self.holder = holder or holder_name()
        self._claim = claim
        # Given a URL, the store builds its engine and `close()` disposes of it; given an engine,
        # the caller keeps it.
        owns = not isinstance(database, Engine)
        engine = database if isinstance(database, Engine) else create_store_engine(database)
        try:
            check_schema(engine)
        except BaseException:
            if owns:
                engine.dispose()
            raise
        self._engine = engine
        self._owns_engine = owns
        self._reads = sessionmaker(engine, expire_on_commit=False)
        self._write_engine = engine.execution_options(**{WRITE_OPTION: True})
        self._writes = sessionmaker(self._write_engine, expire_on_commit=False)
        self._step_upsert = self._upsert_step()  # built once: every step is recorded twice
        # Every write goes through here: the threads' transactions commit together.
        self._transact = GroupCommit(self._write_engine.begin).run
        # run id -> until when this process's claim on it is known to hold (see `hold`)
        self._held: dict[int, datetime] = {}
        self._plans = _Plans()

    def another_process(self, holder: str) -> SqlRunStore:
        """The same database as another process sees it: its claims are in `holder`'s name."""
        return SqlRunStore(self._engine, holder=holder, claim=self._claim)

    def close(self) -> None:
        """Release the connections of an engine the store built itself. Idempotent."""
        if self._owns_engine:
            self._engine.dispose()

    def create(
        self,
        plan: Plan,
        *,
        requested_by: str,
        at: datetime,
        starts_at: datetime | None = None,
        approved_by: str | None = None,
        reason: str = "",
    ) -> Run:
        at = as_utc(at)
        starts_at = as_utc(starts_at) if starts_at is not None else None
        state = RunState.PLANNED if approved_by is None else RunState.APPROVED
        values = {
            "product": plan.product,
            "environment": plan.environment,
            "instance": plan.instance,
            "instance_key": plan.instance_key,
            "strategy": plan.strategy,
            "from_version": plan.from_version,
            "to_version": plan.to_version,
            "plan": record_json.dump_plan(plan),
            "plan_digest": plan.digest,
            "state": state.value,
            "requested_by": requested_by,
            "created_at": at,
            "updated_at": at,
            "starts_at": starts_at,
        }

        def work(connection: Connection) -> int:
            new_id: int = connection.execute(_CREATE, values).scalar_one()
            events = creation_events(
                new_id,
                plan,
                requested_by=requested_by,
                at=at,
                approved_by=approved_by,
                reason=reason,
            )
            connection.execute(insert(RunEventRow), [_event_row(event) for event in events])
            return new_id

        with self._failures("storing a new run"):
            run_id = self._transact(work)
        self._plans.put((run_id, plan.digest), plan)
        return Run(
            id=run_id,
            plan=plan,
            state=state,
            requested_by=requested_by,
            created_at=at,
            updated_at=at,
            starts_at=starts_at,
        )

    def get(self, run_id: int) -> Run:
        with self._failures(f"reading run #{run_id}"), self._engine.begin() as connection:
            row = connection.execute(_RUN, {"id": run_id}).first()
            if row is None:
                raise unknown_run(run_id)
            return self._with_plans(connection, [row])[0]

    def transition(
        self,
        run_id: int,
        expected: RunState,
        target: RunState,
        *,
        at: datetime,
        actor: str,
        reason: str = "",
        steps: Sequence[StepResult] = (),
    ) -> Run:
        moved = self._move(
            run_id, expected, target, at=as_utc(at), actor=actor, reason=reason, steps=steps
        )
        assert moved is not None  # without a claim condition, a lost race raises
        return moved

    def hold(self, run_id: int, *, at: datetime) -> None:
        at = as_utc(at)
        # A claim known to hold for two thirds of its length more needs no renewal yet: no other
        # process can take the run over before the claim runs out.
        if self._held.get(run_id, at) - at > self._claim * 2 / 3:
            return
        renew = (
            update(RunRow)
            .where(RunRow.id == run_id, *self._mine())
            .values(held_until=at + self._claim)
        )
        with self._failures(f"renewing the claim on run #{run_id}"):
            renewed = self._transact(lambda connection: connection.execute(renew).rowcount)
        if renewed == 1:
            self._held[run_id] = at + self._claim
        else:
            self._held.pop(run_id, None)
            raise RunTakenOver(
                f"Run #{run_id} is no longer held by this bot process ({self.holder}): its claim "
                "ran out and another process took the run over. This process runs none of its "
                "steps any more."
            )

    def renew_claims(self, *, at: datetime) -> None:
        renew = update(RunRow).where(*self._mine()).values(held_until=as_utc(at) + self._claim)
        with self._failures("renewing the claims on running runs"):
            self._transact(lambda connection: connection.execute(renew))

    def lapsed(self, *, at: datetime) -> list[Run]:
        query = select(*_STATE).where(_lapsed(as_utc(at))).order_by(RunRow.id)
        with self._failures("looking for runs whose process stopped"), self._engine.begin() as c:
            return self._with_plans(c, c.execute(query).all())

    def take_over(
        self, run_id: int, expected: RunState, *, at: datetime, reason: str
    ) -> Run | None:
        at = as_utc(at)
        return self._move(
            run_id,
            expected,
            RunState.INTERRUPTED,
            at=at,
            actor=f"bot ({self.holder})",
            reason=reason,
            only_if=_lapsed(at),
        )

    def _mine(self) -> tuple[ColumnElement[bool], ...]:
        return (RunRow.holder == self.holder, RunRow.state.in_(_HELD))

    def _move(
        self,
        run_id: int,
        expected: RunState,
        target: RunState,
        *,
        at: datetime,
        actor: str,
        reason: str,
        only_if: ColumnElement[bool] | None = None,
        steps: Sequence[StepResult] = (),
    ) -> Run | None:
        """The compare-and-set of a transition, writing `steps` with it; with `only_if`, a move
        that finds the condition false (or the run moved) changes nothing and gives None."""
        held = target in HELD_STATES
        rows = _step_rows(steps)
        cas = _CAS if only_if is None else _CAS.where(only_if)
        changes: dict[str, Any] = {
            "b_id": run_id,
            "b_state": expected.value,
            "state": target.value,
            "updated_at": at,
            "holder": self.holder if held else None,  # the claim
            "held_until": at + self._claim if held else None,
        }

        # Core statements, not the ORM: a transition is on every run's path (four times for
        # each member of a fleet). The compare-and-set comes first and returns the moved row,
        # so a move that goes through takes one statement; only one that does not reads why.
        # Whatever is not SQL (the plan read back into a `Run`) waits until after the commit:
        # the threads' writes queue behind this transaction.
        def work(connection: Connection) -> Row[Any] | None:
            moved = connection.execute(cas, changes).first()
            if moved is None:
                row = connection.execute(_RUN, {"id": run_id}).first()
                if row is None:
                    raise unknown_run(run_id)
                if only_if is not None:
                    return None
                raise moved_meanwhile(run_id, expected, RunState(row.state))
            check_transition(run_id, expected, target)  # raising undoes the move
            if rows:
                connection.execute(self._step_upsert, rows)
            event = RunEvent(
                run_id=run_id,
                at=at,
                from_state=expected,
                to_state=target,
                actor=actor,
                reason=reason,
            )
            connection.execute(insert(RunEventRow), _event_row(event))
            return moved

        with self._failures(f"moving run #{run_id} to {target.value}"):
            try:
                row = self._transact(work)
            except IntegrityError as exc:
                if target not in ACTIVE_STATES:
                    raise
                # The partial unique index refused a second active run on the instance.
                raise self._busy(run_id) from exc
        if row is None:
            return None
        if held and only_if is None:
            self._held[run_id] = at + self._claim
        else:
            self._held.pop(run_id, None)
        with self._failures(f"reading the plan of run #{run_id}"):
            return self._with_plans(None, [row])[0]

    def record_step(self, *results: StepResult) -> None:
        if not results:
            return
        first, rows = results[0], _step_rows(results)
        where = f"step {first.step_id} of run #{first.run_id}" + (
            f" and {len(results) - 1} more" if len(results) > 1 else ""
        )
        with self._failures(f"recording {where}"):
            try:
                self._transact(_Upsert(self._step_upsert, rows))
            except IntegrityError:
                for result in results:
                    self.get(result.run_id)  # raises `UnknownRun` if the foreign key had no run
                raise

    def steps(self, run_id: int) -> list[StepResult]:
        with self._failures(f"reading the steps of run #{run_id}"), self._reads.begin() as session:
            _existing(session, run_id)
            rows = session.scalars(
                select(StepResultRow)
                .where(StepResultRow.run_id == run_id)
                .order_by(StepResultRow.started_at, StepResultRow.id)
            )
            return [_to_step(row) for row in rows]

    def events(self, run_id: int) -> list[RunEvent]:
        with self._failures(f"reading the events of run #{run_id}"), self._reads.begin() as session:
            _existing(session, run_id)
            rows = session.scalars(
                select(RunEventRow).where(RunEventRow.run_id == run_id).order_by(RunEventRow.id)
            )
            return [_to_event(row) for row in rows]

    def runs(self, *, states: Sequence[RunState] = (), limit: int = 50) -> list[Run]:
        require_limit(limit)
        query = select(*_STATE).order_by(RunRow.id.desc()).limit(limit)
        if states:
            query = query.where(RunRow.state.in_([state.value for state in states]))
        with self._failures("listing runs"), self._engine.begin() as connection:
            return self._with_plans(connection, connection.execute(query).all())

    def _with_plans(self, connection: Connection | None, rows: Sequence[Row[Any]]) -> list[Run]:
        """The runs of `rows` (of the `_STATE` columns), with their plans: those this process
        has not parsed yet are read in one query, on `connection` or else in a read of their own."""
        digests = {row.id: row.plan_digest for row in rows}
        cached = {run_id: self._plans.get((run_id, digest)) for run_id, digest in digests.items()}
        plans = {run_id: plan for run_id, plan in cached.items() if plan is not None}
        missing = [run_id for run_id in digests if run_id not in plans]
        if missing:
            query = select(RunRow.id, RunRow.plan).where(RunRow.id.in_(missing))
            with nullcontext(connection) if connection else self._engine.begin() as reading:
                stored = reading.execute(query).all()
            for run_id, data in stored:
                plans[run_id] = record_json.load_plan(data, run_id=run_id)
                self._plans.put((run_id, digests[run_id]), plans[run_id])
        return [_to_run(row, plans[row.id]) for row in rows]

    def _upsert_step(self) -> Executable:
        key = ("run_id", "phase", "step_id")
        insert = self._insert(StepResultRow)
        # Replacing in place keeps the row's id, so equal start times keep their first order.
        changes = {name: insert.excluded[name] for name in _STEP_COLUMNS if name not in key}
        return insert.on_conflict_do_update(index_elements=list(key), set_=changes)

    def _busy(self, run_id: int) -> Exception:
        with self._reads.begin() as session:
            instance_key = session.scalars(
                select(RunRow.instance_key).where(RunRow.id == run_id)
            ).one()
            holder = _holder(session, run_id, instance_key)
        if holder is None:
            return instance_busy(run_id, instance_key, None, "", "")
        return instance_busy(run_id, instance_key, holder.id, holder.state, holder.requested_by)

    @contextmanager
    def _failures(self, doing: str) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            raise StoreUnavailable(
                f"The run store ({masked(self._engine.url)}) failed while {doing}: "
                f"{describe(exc, self._engine.url)}"
            ) from exc


@dataclass(frozen=True)
class _Upsert:
    """Rows written by one statement; in a transaction shared by several threads, consecutive
    upserts of the same statement merge into one execution with all their rows, in order."""

    statement: Executable
    rows: list[dict[str, Any]]

    def __call__(self, connection: Connection) -> None:
        connection.execute(self.statement, self.rows)

    def merged(self, later: object) -> _Upsert | None:
        if isinstance(later, _Upsert) and later.statement is self.statement:
            return _Upsert(self.statement, [*self.rows, *later.rows])
        return None


def _step_rows(results: Sequence[StepResult]) -> list[dict[str, Any]]:
    return [
        {
            "run_id": result.run_id,
            "phase": result.phase.value,
            "step_id": result.step_id,
            "number": result.number,
            "title": result.title,
            "status": result.status.value,
            "started_at": as_utc(result.started_at),
            "finished_at": as_utc(result.finished_at) if result.finished_at else None,
            "result": record_json.dump_result(result.result),
            "captures": record_json.dump_captures(result.captures),
            "verifications": record_json.dump_verifications(result.verifications),
            "error": result.error,
        }
        for result in results
    ]


def _lapsed(at: datetime) -> ColumnElement[bool]:
    """A run in a held state whose claim ran out before `at` (or that never had one)."""
    return RunRow.state.in_(_HELD) & or_(RunRow.held_until.is_(None), RunRow.held_until < at)


def _existing(session: Session, run_id: int) -> RunRow:
    row = session.get(RunRow, run_id)
    if row is None:
        raise unknown_run(run_id)
    return row


# A run's columns but its plan, which never changes once stored and is read once (`_Plans`).
_STATE = [column for column in RunRow.__table__.c if column.name != "plan"]
# Built once, with their values bound at execution: creations and transitions are on every run's
# path (see `_move`). `_CAS` and `_CREATE` set the columns that come with their values.
_RUN = select(*_STATE).where(RunRow.id == bindparam("id"))
_CAS = (
    update(RunRow)
    .where(RunRow.id == bindparam("b_id"), RunRow.state == bindparam("b_state"))
    .returning(*_STATE)
)
_CREATE = insert(RunRow).returning(RunRow.id)
_HOLDER = select(RunRow.id, RunRow.state, RunRow.requested_by).where(
    RunRow.instance_key == bindparam("b_key"),
    RunRow.state.in_(_ACTIVE),
    RunRow.id != bindparam("b_id"),
)


def _holder(
    connection: Connection | Session, run_id: int, instance_key: str
) -> Row[int, str, str] | None:
    """Another run active on the instance, if there is one."""
    return connection.execute(_HOLDER, {"b_key": instance_key, "b_id": run_id}).first()


class _Plans:
    """The plans parsed lately, by run id and plan digest: a run's plan never changes once
    stored, and parsing it again was most of a transition's work (a fleet's plan holds every
    member's: 5 ms to parse for a fleet of 20, docs/benchmarks.md). The digest in the key keeps a
    run id that a recreated database gave again from finding another plan."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._plans: OrderedDict[tuple[int, str], Plan] = OrderedDict()

    def get(self, key: tuple[int, str]) -> Plan | None:
        with self._lock:
            plan = self._plans.get(key)
            if plan is not None:
                self._plans.move_to_end(key)
            return plan

    def put(self, key: tuple[int, str], plan: Plan) -> None:
        with self._lock:
            self._plans[key] = plan
            self._plans.move_to_end(key)
            if len(self._plans) > self._size:
                self._plans.popitem(last=False)


def _to_run(row: Row[Any], plan: Plan) -> Run:
    return Run(
        id=row.id,
        plan=plan,
        state=RunState(row.state),
        requested_by=row.requested_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        starts_at=row.starts_at,
    )


def _event_row(event: RunEvent) -> dict[str, Any]:
    return {
        "run_id": event.run_id,
        "at": event.at,
        "from_state": event.from_state.value if event.from_state is not None else None,
        "to_state": event.to_state.value,
        "actor": event.actor,
        "reason": event.reason,
    }


def _to_event(row: RunEventRow) -> RunEvent:
    return RunEvent(
        run_id=row.run_id,
        at=row.at,
        from_state=RunState(row.from_state) if row.from_state is not None else None,
        to_state=RunState(row.to_state),
        actor=row.actor,
        reason=row.reason,
    )


def _to_step(row: StepResultRow) -> StepResult:
    where = f"step {row.step_id} of run #{row.run_id}"
    return StepResult(
        run_id=row.run_id,
        phase=Phase(row.phase),
        number=row.number,
        step_id=row.step_id,
        title=row.title,
        status=StepStatus(row.status),
        started_at=row.started_at,
        finished_at=row.finished_at,
        result=record_json.load_result(row.result, where=where),
        captures=record_json.load_captures(row.captures, where=where),
        verifications=record_json.load_verifications(row.verifications, where=where),
        error=row.error,
    )
