"""The `RunStore` contract, run against the memory twin, SQLite and the real PostgreSQL.

PostgreSQL is the test service (`services` fixture): when it cannot start, these tests fail.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from adapters.memory.store import MemoryRunStore
from adapters.sql_engine import create_store_engine
from adapters.sql_models import Base
from adapters.sql_store import SqlRunStore, upgrade_schema
from bot.domain.errors import InstanceBusy, InvalidTransition, StoreUnavailable, UnknownRun
from bot.domain.plan import Plan
from bot.domain.ports import RunStore
from bot.domain.run import Phase, Run, RunState, StepStatus
from bot.domain.runbook import DockerAction, HttpAction, ShellAction
from tests.factories import AT, at, make_plan, make_result, started
from tests.hostkit.databases import postgres_schema
from tests.hostkit.services import Services

S = RunState
TO_RUNNING = (S.AWAITING_APPROVAL, S.APPROVED, S.RUNNING)


@pytest.fixture(scope="session")
def postgres_url(services: Services) -> Iterator[str]:
    """A schema of our own in the test database, migrated once, dropped at the end."""
    with postgres_schema(services, "run_store") as url:
        upgrade_schema(url)
        yield url


STORES = ["memory", "sqlite", "postgresql"]


@contextlib.contextmanager
def open_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[MemoryRunStore | SqlRunStore]:
    """An empty store of the kind `request.param` names, built the same way for every suite.

    PostgreSQL's is the requesting module's `postgres_url` schema, emptied.
    """
    if request.param == "memory":
        yield MemoryRunStore()
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'bot.db'}"
        upgrade_schema(url)
    else:
        url = request.getfixturevalue("postgres_url")
    engine = create_store_engine(url)
    if request.param == "postgresql":
        tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
        with engine.begin() as connection:  # a clean slate, ids from 1 again
            connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY"))
    try:
        yield SqlRunStore(engine)
    finally:
        engine.dispose()


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunStore]:
    with open_store(request, tmp_path) as opened:
        yield opened


def new_run(store: RunStore, *moves: RunState, instance: str = "studio-1", by: str = "@ana") -> Run:
    """A run created now and moved through `moves`, each from the state before it."""
    run = store.create(make_plan(instance=instance), requested_by=by, at=AT)
    for minute, target in enumerate(moves, 1):
        run = store.transition(run.id, run.state, target, at=at(minute), actor="@bo")
    return run


def fresh(store: RunStore) -> RunStore:
    """The same runs as a process that has read none of them sees them: their plans are parsed
    from what was stored (a store keeps the plans it has written or read)."""
    assert isinstance(store, MemoryRunStore | SqlRunStore)
    return store.another_process("reader")


def test_a_created_run_reads_back_equal_down_to_each_step_action(store: RunStore) -> None:
    plan = make_plan()
    created = store.create(plan, requested_by="@ana", at=AT)
    read = fresh(store).get(created.id)  # parsed from what was stored

    assert read == created
    assert read.plan == plan
    assert read.plan.digest == plan.digest
    assert read.state is S.PLANNED
    assert (read.requested_by, read.created_at, read.updated_at) == ("@ana", AT, AT)
    assert [p.step for p in read.plan.steps] == [p.step for p in plan.steps]
    kinds = [type(p.step.action) for p in (*read.plan.steps, *read.plan.rollback)]
    assert kinds == [DockerAction, ShellAction, ShellAction, HttpAction, DockerAction, ShellAction]
    assert read.plan.steps[2].step.action == plan.steps[2].step.action  # with its Follow
    assert read.plan.steps[3].step.verifications == plan.steps[3].step.verifications


def test_ids_increase(store: RunStore) -> None:
    ids = [new_run(store).id for _ in range(3)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 3


def test_timestamps_come_back_aware_in_utc_to_the_microsecond(store: RunStore) -> None:
    cet = timezone(timedelta(hours=1))
    when = (AT + timedelta(microseconds=123456)).astimezone(cet)
    run = store.create(make_plan(), requested_by="@ana", at=when)
    read = store.get(run.id)
    assert read.created_at == when
    assert read.created_at.utcoffset() == timedelta(0)
    assert store.events(run.id)[0].at == when


def test_naive_timestamps_are_refused(store: RunStore) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        store.create(make_plan(), requested_by="@ana", at=AT.replace(tzinfo=None))


def test_an_unknown_run_is_named_with_the_fix(store: RunStore) -> None:
    new_run(store)
    with pytest.raises(UnknownRun) as caught:
        store.get(4242)
    assert "#4242" in caught.value.problem
    assert "history" in caught.value.fix
    for call in (
        lambda: store.transition(4242, S.PLANNED, S.CANCELLED, at=AT, actor="@bo"),
        lambda: store.record_step(make_result(run_id=4242)),
        lambda: store.steps(4242),
        lambda: store.events(4242),
    ):
        with pytest.raises(UnknownRun):
            call()


def test_a_run_moves_through_allowed_transitions(store: RunStore) -> None:
    run = new_run(store)
    for minute, target in enumerate((*TO_RUNNING, S.SUCCEEDED), 1):
        moved = store.transition(run.id, run.state, target, at=at(minute), actor="@bo")
        assert (moved.state, moved.updated_at, moved.created_at) == (target, at(minute), AT)
        assert store.get(run.id) == moved
        run = moved


def test_a_move_the_lifecycle_does_not_allow_is_refused(store: RunStore) -> None:
    run = new_run(store)
    with pytest.raises(InvalidTransition, match="cannot become running"):
        store.transition(run.id, S.PLANNED, S.RUNNING, at=at(1), actor="@bo")
    assert store.get(run.id) == run
    assert len(store.events(run.id)) == 1


def test_a_run_someone_else_moved_is_not_moved_again(store: RunStore) -> None:
    run = new_run(store, S.AWAITING_APPROVAL)
    # Two approvers saw it awaiting approval; one approved first, the other then rejects.
    store.transition(run.id, S.AWAITING_APPROVAL, S.APPROVED, at=at(5), actor="@cy")
    with pytest.raises(InvalidTransition) as caught:
        store.transition(run.id, S.AWAITING_APPROVAL, S.REJECTED, at=at(6), actor="@di")
    assert f"#{run.id} is approved, not awaiting approval" in caught.value.problem
    assert f"status {run.id}" in caught.value.fix
    assert store.get(run.id).state is S.APPROVED
    assert [e.actor for e in store.events(run.id)][-1] == "@cy"


def test_events_keep_every_transition_in_order(store: RunStore) -> None:
    plan = make_plan()
    run = store.create(plan, requested_by="@ana", at=AT)
    store.transition(run.id, S.PLANNED, S.AWAITING_APPROVAL, at=at(1), actor="bot")
    store.transition(run.id, S.AWAITING_APPROVAL, S.APPROVED, at=at(1), actor="@cy", reason="ok")
    store.transition(run.id, S.APPROVED, S.CANCELLED, at=at(2), actor="@ana", reason="window")
    other = new_run(store, S.CANCELLED)  # its events stay its own

    trail = [(e.from_state, e.to_state, e.actor, e.reason, e.at) for e in store.events(run.id)]
    assert trail == [
        (None, S.PLANNED, "@ana", f"plan {plan.digest}", AT),
        (S.PLANNED, S.AWAITING_APPROVAL, "bot", "", at(1)),
        (S.AWAITING_APPROVAL, S.APPROVED, "@cy", "ok", at(1)),
        (S.APPROVED, S.CANCELLED, "@ana", "window", at(2)),
    ]
    assert {e.run_id for e in store.events(run.id)} == {run.id}
    assert [e.to_state for e in store.events(other.id)] == [S.PLANNED, S.CANCELLED]


def test_a_run_created_approved_has_the_whole_trail_and_can_start(store: RunStore) -> None:
    plan = make_plan()
    why = "approved as part of run #1"
    run = store.create(plan, requested_by="@ana", at=AT, approved_by="run #1", reason=why)
    assert run.state is S.APPROVED
    assert store.get(run.id) == run

    trail = [(e.from_state, e.to_state, e.actor, e.reason, e.at) for e in store.events(run.id)]
    assert trail == [
        (None, S.PLANNED, "@ana", f"plan {plan.digest}", AT),
        (S.PLANNED, S.AWAITING_APPROVAL, "run #1", why, AT),
        (S.AWAITING_APPROVAL, S.APPROVED, "run #1", why, AT),
    ]
    assert store.transition(run.id, S.APPROVED, S.RUNNING, at=at(1), actor="bot").state is S.RUNNING


def test_a_finished_step_replaces_its_started_record(store: RunStore) -> None:
    run = new_run(store, *TO_RUNNING)
    done = make_result(run_id=run.id)
    store.record_step(started(done))
    assert store.steps(run.id) == [started(done)]

    store.record_step(done)
    assert store.steps(run.id) == [done]
    assert store.steps(run.id)[0].result == done.result


def test_one_step_ends_and_the_next_starts_in_one_write(store: RunStore) -> None:
    run = new_run(store, *TO_RUNNING)
    first = make_result(run_id=run.id, step_id="pull", number=1, started_at=at(1))
    second = started(make_result(run_id=run.id, step_id="backup", number=2, started_at=at(2)))
    store.record_step(started(first))
    store.record_step(first, second)
    assert store.steps(run.id) == [first, second]


def test_several_steps_are_written_all_or_none(store: RunStore) -> None:
    run = new_run(store, *TO_RUNNING)
    done = make_result(run_id=run.id)
    stray = make_result(run_id=run.id + 99, step_id="backup")
    with pytest.raises(UnknownRun):
        store.record_step(done, stray)
    assert store.steps(run.id) == []


def test_a_transition_writes_the_steps_given_with_it_or_none_when_refused(
    store: RunStore,
) -> None:
    run = new_run(store, *TO_RUNNING)
    done = make_result(run_id=run.id)
    store.record_step(started(done))
    with pytest.raises(InvalidTransition):
        store.transition(run.id, S.RUNNING, S.PLANNED, at=at(5), actor="bot", steps=[done])
    assert store.steps(run.id) == [started(done)]
    store.transition(run.id, S.RUNNING, S.SUCCEEDED, at=at(5), actor="bot", steps=[done])
    assert store.get(run.id).state is S.SUCCEEDED
    assert store.steps(run.id) == [done]


def test_a_failed_step_keeps_its_error_and_an_empty_result(store: RunStore) -> None:
    run = new_run(store, *TO_RUNNING)
    failed = make_result(
        run_id=run.id, status=StepStatus.FAILED, result=None, captures={}, error="boom"
    )
    store.record_step(failed)
    assert store.steps(run.id) == [failed]


def test_steps_come_back_in_start_order_per_run(store: RunStore) -> None:
    run = new_run(store, *TO_RUNNING)
    other = new_run(store, S.CANCELLED, instance="studio-2")
    late = make_result(run_id=run.id, step_id="start", number=3, started_at=at(3))
    early = make_result(run_id=run.id, step_id="pull", number=1, started_at=at(1))
    # Same step id in the rollback phase: a different step. Same start as `tie`: keeps its place.
    undo = make_result(run_id=run.id, step_id="pull", phase=Phase.ROLLBACK, started_at=at(2))
    tie = make_result(run_id=run.id, step_id="backup", number=2, started_at=at(2))
    for result in (late, early, undo, tie, make_result(run_id=other.id)):
        store.record_step(result)
    store.record_step(replace(undo, status=StepStatus.FAILED))  # replaced, not moved

    assert store.steps(run.id) == [early, replace(undo, status=StepStatus.FAILED), tie, late]


def test_runs_lists_newest_first_filtered_and_limited(store: RunStore) -> None:
    first = new_run(store, S.CANCELLED, instance="a")
    second = new_run(store, *TO_RUNNING, instance="b")
    third = new_run(store, S.AWAITING_APPROVAL, instance="c")
    fourth = new_run(store, *TO_RUNNING, instance="d")

    assert [r.id for r in store.runs()] == [fourth.id, third.id, second.id, first.id]
    assert [r.id for r in store.runs(limit=2)] == [fourth.id, third.id]
    assert store.runs(states=[S.RUNNING]) == [fourth, second]
    both = store.runs(states=[S.CANCELLED, S.AWAITING_APPROVAL])
    assert [r.id for r in both] == [third.id, first.id]
    assert store.runs(states=[S.RUNNING], limit=1) == [fourth]
    assert store.runs(states=[S.FAILED]) == []
    with pytest.raises(ValueError, match="limit"):
        store.runs(limit=0)


def test_one_active_run_per_instance(store: RunStore) -> None:
    holder = new_run(store, *TO_RUNNING, by="@ana")
    waiting = new_run(store, S.AWAITING_APPROVAL, S.APPROVED)
    elsewhere = new_run(store, S.AWAITING_APPROVAL, S.APPROVED, instance="studio-2")

    with pytest.raises(InstanceBusy) as caught:
        store.transition(waiting.id, S.APPROVED, S.RUNNING, at=at(9), actor="engine")
    message = str(caught.value)
    assert f"#{holder.id}" in message
    assert "running" in message
    assert "@ana" in message
    assert "nonprod/studio-1" in message
    assert store.get(waiting.id) == waiting
    assert store.events(waiting.id)[-1].to_state is S.APPROVED

    store.transition(elsewhere.id, S.APPROVED, S.RUNNING, at=at(9), actor="engine")

    # The holder keeps the instance while interrupted, and may itself move on among active states.
    store.transition(holder.id, S.RUNNING, S.INTERRUPTED, at=at(10), actor="recovery")
    with pytest.raises(InstanceBusy, match="interrupted"):
        store.transition(waiting.id, S.APPROVED, S.RUNNING, at=at(11), actor="engine")
    store.transition(holder.id, S.INTERRUPTED, S.RUNNING, at=at(12), actor="@ana")
    store.transition(holder.id, S.RUNNING, S.SUCCEEDED, at=at(13), actor="engine")

    moved = store.transition(waiting.id, S.APPROVED, S.RUNNING, at=at(14), actor="engine")
    assert moved.state is S.RUNNING
    # ... and now the finished run cannot roll back onto the busy instance.
    with pytest.raises(InstanceBusy, match=f"#{waiting.id}"):
        store.transition(holder.id, S.SUCCEEDED, S.ROLLING_BACK, at=at(15), actor="@ana")


def test_a_run_waiting_at_a_gate_holds_its_instance(store: RunStore) -> None:
    holder = new_run(store, *TO_RUNNING, S.WAITING, by="@ana")
    next_ = new_run(store, S.AWAITING_APPROVAL, S.APPROVED)

    with pytest.raises(InstanceBusy) as caught:
        store.transition(next_.id, S.APPROVED, S.RUNNING, at=at(9), actor="engine")
    assert f"#{holder.id}" in str(caught.value)
    assert "waiting" in str(caught.value)
    assert store.get(next_.id) == next_

    # Let through the gate, the holder goes on running on its own instance; cancelled, it lets go.
    store.transition(holder.id, S.WAITING, S.RUNNING, at=at(10), actor="@cy")
    store.transition(holder.id, S.RUNNING, S.WAITING, at=at(11), actor="engine")
    with pytest.raises(InstanceBusy, match="waiting"):
        store.transition(next_.id, S.APPROVED, S.RUNNING, at=at(12), actor="engine")
    store.transition(holder.id, S.WAITING, S.CANCELLED, at=at(13), actor="@ana")
    moved = store.transition(next_.id, S.APPROVED, S.RUNNING, at=at(14), actor="engine")
    assert moved.state is S.RUNNING


def test_two_runs_racing_for_one_instance_one_wins(store: RunStore) -> None:
    def move(run: Run, start: threading.Barrier) -> Run | InstanceBusy:
        start.wait()  # both threads leave together, so their transactions overlap
        try:
            return store.transition(run.id, S.APPROVED, S.RUNNING, at=at(5), actor="engine")
        except InstanceBusy as refused:
            return refused

    for round_ in range(8):
        runs = [
            new_run(store, S.AWAITING_APPROVAL, S.APPROVED, instance=f"r{round_}") for _ in "ab"
        ]
        start = threading.Barrier(len(runs))
        with ThreadPoolExecutor(max_workers=len(runs)) as pool:
            outcomes = list(pool.map(move, runs, [start] * len(runs)))

        winners = [o for o in outcomes if isinstance(o, Run)]
        refusals = [o for o in outcomes if isinstance(o, InstanceBusy)]
        assert len(winners) == 1, outcomes
        assert len(refusals) == 1, outcomes
        assert f"#{winners[0].id}" in str(refusals[0])
        states = {r.id: store.get(r.id).state for r in runs}
        assert sorted(states.values()) == [S.APPROVED, S.RUNNING]
        assert states[winners[0].id] is S.RUNNING


def test_plans_differing_only_in_instance_are_told_apart(store: RunStore) -> None:
    one = store.create(make_plan(instance="one"), requested_by="@ana", at=AT)
    two = store.create(make_plan(instance="two"), requested_by="@ana", at=AT)
    reader = fresh(store)
    plans: list[Plan] = [reader.get(one.id).plan, reader.get(two.id).plan]
    assert [p.instance_key for p in plans] == ["nonprod/one", "nonprod/two"]
    assert plans[0].digest != plans[1].digest
    assert plans[0].created_at.tzinfo is not None
    assert plans[0].created_at.astimezone(UTC) == AT


def test_a_fleet_plan_with_its_member_plans_round_trips(store: RunStore) -> None:
    members = (make_plan(instance="studio-1"), make_plan(instance="studio-2"))
    fleet = make_plan(instance="*", members=members, batch_size=2, steps=())
    run = store.create(fleet, requested_by="@ana", at=AT)
    read = fresh(store).get(run.id)
    assert read.plan == fleet
    assert read.plan.members[1].instance == "studio-2"


def test_a_scheduled_run_keeps_its_start_time_in_utc(store: RunStore) -> None:
    cet = timezone(timedelta(hours=1))
    starts = (AT + timedelta(days=3)).astimezone(cet)
    run = store.create(make_plan(), requested_by="@ana", at=AT, starts_at=starts)
    assert run.starts_at == starts
    read = store.get(run.id)
    assert read.starts_at == starts
    assert read.starts_at is not None
    assert read.starts_at.utcoffset() == timedelta(0)
    moved = store.transition(run.id, S.PLANNED, S.AWAITING_APPROVAL, at=at(1), actor="@bo")
    assert moved.starts_at == starts
    assert store.runs(states=(S.AWAITING_APPROVAL,))[0].starts_at == starts
    assert store.create(make_plan(), requested_by="@ana", at=AT).starts_at is None


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlRunStore]:
    with open_store(request, tmp_path) as opened:
        assert isinstance(opened, SqlRunStore)
        yield opened


def plan_reads(store: SqlRunStore) -> list[str]:
    """The statements that read a run's plan column on `store`'s engine (and so of every store
    of `another_process`) from now on."""
    seen: list[str] = []
    reads_plan = re.compile(r'\bruns\."?plan\b(?!_)')

    def executed(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if reads_plan.search(statement):
            seen.append(statement)

    event.listen(store._engine, "before_cursor_execute", executed)
    return seen


def test_a_plan_is_read_from_the_database_once_per_process(sql_store: SqlRunStore) -> None:
    plan = make_plan()
    run = sql_store.create(plan, requested_by="@ana", at=AT)
    other = sql_store.another_process("bot-b")
    reads = plan_reads(sql_store)

    moved = sql_store.transition(run.id, S.PLANNED, S.AWAITING_APPROVAL, at=at(1), actor="@bo")
    assert (moved.plan, sql_store.get(run.id).plan, sql_store.runs()[0].plan) == (plan,) * 3
    assert reads == []  # written by this process: never read back

    approved = other.transition(run.id, S.AWAITING_APPROVAL, S.APPROVED, at=at(2), actor="@cy")
    assert approved.plan == plan  # the other process had not read it: once
    assert (other.get(run.id).plan, other.runs()[0].plan) == (plan, plan)
    assert len(reads) == 1


def test_a_stored_plan_this_version_cannot_read_is_named(sql_store: SqlRunStore) -> None:
    run = sql_store.create(make_plan(), requested_by="@ana", at=AT)
    with sql_store._engine.begin() as connection:
        connection.execute(text("UPDATE runs SET plan = :plan"), {"plan": '{"steps": 3}'})
    other = sql_store.another_process("bot-b")
    for read in (lambda: other.get(run.id), other.runs):
        with pytest.raises(StoreUnavailable, match=rf"plan of run #{run.id} cannot be read"):
            read()
    assert sql_store.get(run.id).plan == run.plan  # the process that wrote it keeps its copy
