"""Claims on running runs, with two processes on one store: the memory twin, SQLite, PostgreSQL.

A process that moves a run into a held state (running, rolling back) claims it for the store's
claim length and renews it; another process may take the run over, as interrupted, only once that
claim has run out, and then the first may run no further step of it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest

from adapters.memory.store import MemoryRunStore
from adapters.sql_store import SqlRunStore
from bot.domain.errors import RunTakenOver
from bot.domain.run import RunState
from tests.contract.test_run_store_contract import (
    STORES,
    TO_RUNNING,
    new_run,
    open_store,
    postgres_url,  # noqa: F401 - the fixture open_store asks for
)
from tests.factories import AT

S = RunState
CLAIM = timedelta(seconds=30)


def seconds(n: float):  # type: ignore[no-untyped-def]
    """`AT` plus `n` seconds; the runs below start running three minutes after `AT`."""
    return AT + timedelta(minutes=3, seconds=n)


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MemoryRunStore | SqlRunStore]:
    """Process A's view of an empty store."""
    with open_store(request, tmp_path) as opened:
        yield opened.another_process("bot-a")


def test_a_run_is_taken_over_only_once_its_claim_has_run_out(store) -> None:  # type: ignore[no-untyped-def]
    other = store.another_process("bot-b")
    run = new_run(store, *TO_RUNNING)  # running since seconds(0), claimed by bot-a

    assert other.lapsed(at=seconds(20)) == []
    assert other.take_over(run.id, S.RUNNING, at=seconds(20), reason="early") is None
    store.hold(run.id, at=seconds(25))  # before its next step: good until seconds(55)
    assert other.lapsed(at=seconds(40)) == []

    [lapsed] = other.lapsed(at=seconds(60))
    assert lapsed.id == run.id
    taken = other.take_over(run.id, S.RUNNING, at=seconds(60), reason="bot-a stopped")
    assert taken is not None
    assert taken.state is S.INTERRUPTED
    event = store.events(run.id)[-1]
    assert (event.to_state, event.actor, event.reason) == (
        S.INTERRUPTED,
        "bot (bot-b)",
        "bot-a stopped",
    )
    with pytest.raises(RunTakenOver, match=f"Run #{run.id} is no longer held"):
        store.hold(run.id, at=seconds(61))
    assert other.take_over(run.id, S.RUNNING, at=seconds(62), reason="again") is None
    assert other.lapsed(at=seconds(600)) == []  # interrupted: no process executes it


def test_the_heartbeat_renews_this_process_s_claims_only(store) -> None:  # type: ignore[no-untyped-def]
    other = store.another_process("bot-b")
    mine = new_run(store, *TO_RUNNING)
    theirs = new_run(other, *TO_RUNNING, instance="studio-2")
    store.renew_claims(at=seconds(25))
    assert [r.id for r in other.lapsed(at=seconds(40))] == [theirs.id]
    other.renew_claims(at=seconds(40))
    assert other.lapsed(at=seconds(50)) == []
    assert [r.id for r in store.lapsed(at=seconds(60))] == [mine.id]


def test_the_claim_ends_when_the_run_stops_being_executed(store) -> None:  # type: ignore[no-untyped-def]
    other = store.another_process("bot-b")
    run = new_run(store, *TO_RUNNING, S.WAITING)  # at a gate: nobody executes it
    assert store.lapsed(at=seconds(3600)) == []
    with pytest.raises(RunTakenOver):
        store.hold(run.id, at=seconds(1))
    # whoever lets it go on after the gate executes it from then on
    other.transition(run.id, S.WAITING, S.RUNNING, at=seconds(2), actor="@bo")
    other.hold(run.id, at=seconds(3))
    with pytest.raises(RunTakenOver):
        store.hold(run.id, at=seconds(3))
    other.transition(run.id, S.RUNNING, S.SUCCEEDED, at=seconds(4), actor="engine")
    assert other.lapsed(at=seconds(3600)) == []


def test_of_several_processes_taking_a_run_over_at_once_one_does(store) -> None:  # type: ignore[no-untyped-def]
    run = new_run(store, *TO_RUNNING)
    others = [store.another_process(f"bot-{n}") for n in range(4)]
    start = threading.Barrier(len(others))

    def take(process):  # type: ignore[no-untyped-def]
        start.wait()
        return process.take_over(run.id, S.RUNNING, at=seconds(90), reason="stopped")

    with ThreadPoolExecutor(max_workers=len(others)) as pool:
        outcomes = list(pool.map(take, others))
    assert sum(o is not None for o in outcomes) == 1
    assert [e.to_state for e in store.events(run.id)].count(S.INTERRUPTED) == 1
