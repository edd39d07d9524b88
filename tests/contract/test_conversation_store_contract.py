"""The `VoteStore`, `EventLog`, `LockStore` and `ThreadStore` contracts, run against the memory
twin, SQLite and the real PostgreSQL, each built as for the `RunStore` contract (`open_store`).

The races matter most on PostgreSQL, where two bot processes share the database: Slack delivers an
event again when our answer is slow, and two approvers can press the same button at once.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
from sqlalchemy import Engine, event, insert, select, text

from adapters.sql_engine import create_store_engine
from adapters.sql_models import Base
from adapters.sql_store import SqlRunStore, upgrade_schema
from bot.domain.approval import Decision, Vote
from bot.domain.conversation import ChatThread, EnvLock
from bot.domain.errors import StoreUnavailable, UnknownRun
from bot.domain.ports import EventLog, LockStore, RunStore, ThreadStore, VoteStore
from bot.domain.run import RunState
from tests.contract.test_run_store_contract import STORES, new_run, open_store
from tests.factories import AT, at
from tests.hostkit.databases import postgres_schema
from tests.hostkit.services import Services

A = TypeVar("A")
T = TypeVar("T")
APPROVE, REJECT = Decision.APPROVE, Decision.REJECT
CET = timezone(timedelta(hours=1))
ROUNDS = 8  # of each race: one round may not overlap the threads, eight together do


class ConversationStore(RunStore, VoteStore, EventLog, LockStore, ThreadStore, Protocol):
    """What each store under test is: the run store and the four conversation ports."""


@pytest.fixture(scope="session")
def postgres_url(services: Services) -> Iterator[str]:
    """A schema of our own in the test database, migrated once, dropped at the end."""
    with postgres_schema(services, "conversation_store") as url:
        upgrade_schema(url)
        yield url


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ConversationStore]:
    with open_store(request, tmp_path) as opened:
        yield opened


PLAN = "d1"
GATE = f"{PLAN}.approve-cutover"  # a gate inside plan d1: `<plan digest>.<gate step id>`


def vote(
    run: int,
    user: str = "@cy",
    decision: Decision = APPROVE,
    minute: float = 1,
    digest: str = PLAN,
) -> Vote:
    return Vote(
        run_id=run, user=user, decision=decision, plan_digest=digest, at=at(minute), via="button"
    )


def env_lock(environment: str = "prod", by: str = "@ana", minute: float = 0) -> EnvLock:
    return EnvLock(environment=environment, locked_by=by, reason="incident 12", at=at(minute))


def race(attempt: Callable[[A], T], arguments: Sequence[A]) -> list[T]:
    """`attempt(argument)` for each argument, each in its own thread, all released together so
    their transactions overlap."""
    start = threading.Barrier(len(arguments))

    def go(argument: A) -> T:
        start.wait()
        return attempt(argument)

    with ThreadPoolExecutor(max_workers=len(arguments)) as pool:
        return list(pool.map(go, arguments))


# VoteStore


def test_votes_come_back_as_cast_in_time_order(store: ConversationStore) -> None:
    run = new_run(store, RunState.AWAITING_APPROVAL).id
    other = new_run(store, RunState.CANCELLED).id
    late = vote(run, "@cy", minute=3)
    early = vote(run, "@di", REJECT, minute=1)
    tie = vote(run, "@ed", minute=3)  # cast at the same instant as `late`, added after it
    assert store.votes(run) == []

    for cast in (late, early, tie, vote(other, "@cy")):
        assert store.add_vote(cast) is True

    assert store.votes(run) == [early, late, tie]
    assert store.votes(other) == [vote(other, "@cy")]


def test_a_repeated_vote_is_refused_and_the_first_one_kept(store: ConversationStore) -> None:
    run = new_run(store).id
    first = vote(run, minute=1)
    assert store.add_vote(first) is True
    again = Vote(run_id=run, user="@cy", decision=APPROVE, plan_digest=PLAN, at=at(2), via="emoji")
    assert store.add_vote(again) is False
    assert store.votes(run) == [first]


def test_one_user_may_approve_the_plan_and_then_a_gate(store: ConversationStore) -> None:
    run = new_run(store).id
    plan, gate = vote(run, minute=1), vote(run, minute=5, digest=GATE)
    assert store.add_vote(plan) is True
    assert store.add_vote(gate) is True
    assert store.add_vote(vote(run, minute=6, digest=GATE)) is False  # the gate's, cast again
    assert store.add_vote(vote(run, minute=7)) is False  # the plan's, cast again
    assert store.votes(run) == [plan, gate]

    assert store.remove_vote(run, "@cy", APPROVE, GATE) is True
    assert store.votes(run) == [plan]  # the plan's approval stands
    assert store.remove_vote(run, "@cy", APPROVE, GATE) is False
    assert store.add_vote(gate) is True
    assert store.remove_vote(run, "@cy", APPROVE, PLAN) is True
    assert store.votes(run) == [gate]  # and the other way round
    assert store.remove_vote(run, "@cy", APPROVE, "d2") is False  # never cast for that digest
    assert store.votes(run) == [gate]


def test_a_gate_digest_holds_a_full_plan_digest_and_step_id(store: ConversationStore) -> None:
    run = new_run(store).id
    digest = f"{'f' * 64}.{'gate-' * 40}"  # as wide as `runs.plan_digest` + `step_results.step_id`
    long = vote(run, digest=digest)
    assert store.add_vote(long) is True
    assert store.votes(run) == [long]
    assert store.remove_vote(run, "@cy", APPROVE, digest) is True


def test_one_user_may_hold_an_approve_and_a_reject_separately(store: ConversationStore) -> None:
    run = new_run(store).id
    approve, reject = vote(run, decision=APPROVE, minute=1), vote(run, decision=REJECT, minute=2)
    assert store.add_vote(approve) is True
    assert store.add_vote(reject) is True
    assert store.votes(run) == [approve, reject]

    assert store.remove_vote(run, "@cy", APPROVE, PLAN) is True
    assert store.votes(run) == [reject]


def test_a_withdrawn_vote_is_gone_and_withdrawing_nothing_is_false(
    store: ConversationStore,
) -> None:
    run = new_run(store).id
    other = new_run(store).id
    mine, theirs = vote(run, "@cy"), vote(run, "@di", minute=2)
    for cast in (mine, theirs, vote(other, "@cy")):
        store.add_vote(cast)

    assert store.remove_vote(run, "@cy", APPROVE, PLAN) is True
    assert store.votes(run) == [theirs]
    assert store.votes(other) == [vote(other, "@cy")]  # the same user's vote elsewhere stays
    assert store.remove_vote(run, "@cy", APPROVE, PLAN) is False  # withdrawn already
    assert store.remove_vote(run, "@di", REJECT, PLAN) is False  # never cast
    assert store.remove_vote(run, "@zed", APPROVE, PLAN) is False  # never voted

    assert store.add_vote(mine) is True  # and may be cast again
    assert store.votes(run) == [mine, theirs]


def test_vote_times_come_back_aware_in_utc_and_naive_ones_are_refused(
    store: ConversationStore,
) -> None:
    run = new_run(store).id
    when = (AT + timedelta(microseconds=123456)).astimezone(CET)
    store.add_vote(Vote(run_id=run, user="@cy", decision=APPROVE, plan_digest="d", at=when, via=""))
    (read,) = store.votes(run)
    assert read.at == when
    assert read.at.utcoffset() == timedelta(0)
    with pytest.raises(ValueError, match="timezone-aware"):
        store.add_vote(replace(vote(run, "@di"), at=AT.replace(tzinfo=None)))


def test_votes_on_an_unknown_run_are_refused(store: ConversationStore) -> None:
    new_run(store)
    for call in (
        lambda: store.add_vote(vote(4242)),
        lambda: store.remove_vote(4242, "@cy", APPROVE, PLAN),
        lambda: store.votes(4242),
    ):
        with pytest.raises(UnknownRun, match="#4242"):
            call()


def test_the_same_vote_cast_twice_at_once_is_recorded_once(store: ConversationStore) -> None:
    run = new_run(store).id
    for round_ in range(ROUNDS):
        plan, gate = vote(run, f"@u{round_}"), vote(run, f"@u{round_}", digest=GATE)
        added = race(store.add_vote, [plan, gate, plan, gate])
        assert sorted(added) == [False, False, True, True]
    assert len(store.votes(run)) == 2 * ROUNDS


# EventLog


def test_an_event_is_seen_for_the_first_time_exactly_once(store: ConversationStore) -> None:
    assert store.first_sighting("Ev01", AT) is True
    assert store.first_sighting("Ev01", at(1)) is False  # Slack's retry
    assert store.first_sighting("Ev01", AT) is False
    assert store.first_sighting("Ev02", AT.astimezone(CET)) is True
    assert store.first_sighting("ev01", AT) is True  # keys are compared exactly
    with pytest.raises(ValueError, match="timezone-aware"):
        store.first_sighting("Ev03", AT.replace(tzinfo=None))


def test_two_deliveries_racing_see_one_first_sighting(store: ConversationStore) -> None:
    for round_ in range(ROUNDS):
        key = f"Ev-race-{round_}"
        assert sorted(race(lambda k: store.first_sighting(k, AT), [key, key])) == [False, True]
        assert store.first_sighting(key, AT) is False


# LockStore


def test_a_lock_is_not_overwritten_and_the_standing_one_is_returned(
    store: ConversationStore,
) -> None:
    first = env_lock("prod", "@ana", minute=0)
    assert store.lock(first) == first
    assert store.lock(env_lock("prod", "@bo", minute=5)) == first
    assert store.locks() == [first]

    staging = env_lock("staging", "@bo")
    assert store.lock(staging) == staging
    assert store.locks() == [first, staging]  # by environment


def test_unlock_returns_the_removed_lock_or_none(store: ConversationStore) -> None:
    prod, staging = env_lock("prod"), env_lock("staging")
    store.lock(prod)
    store.lock(staging)

    assert store.unlock("prod") == prod
    assert store.locks() == [staging]
    assert store.unlock("prod") is None
    assert store.unlock("nowhere") is None

    relocked = env_lock("prod", "@bo", minute=9)  # free again, so anyone may lock it
    assert store.lock(relocked) == relocked
    assert store.locks() == [relocked, staging]


def test_lock_times_come_back_aware_in_utc_and_naive_ones_are_refused(
    store: ConversationStore,
) -> None:
    when = (AT + timedelta(microseconds=654321)).astimezone(CET)
    lock = EnvLock(environment="prod", locked_by="@ana", reason="freeze", at=when)
    for returned in (store.lock(lock), store.locks()[0], store.unlock("prod")):
        assert returned == lock
        assert returned is not None
        assert returned.at.utcoffset() == timedelta(0)
    with pytest.raises(ValueError, match="timezone-aware"):
        store.lock(replace(env_lock("qa"), at=AT.replace(tzinfo=None)))
    assert store.locks() == []


def test_two_people_locking_at_once_both_see_the_one_lock_that_stands(
    store: ConversationStore,
) -> None:
    for round_ in range(ROUNDS):
        environment = f"env-{round_}"
        wanted = [env_lock(environment, "@ana"), env_lock(environment, "@bo")]
        first, second = race(store.lock, wanted)
        assert first == second
        assert first in wanted
        assert store.locks() == [first]
        assert store.unlock(environment) == first


# ThreadStore


def test_a_thread_is_saved_then_replaced(store: ConversationStore) -> None:
    run = new_run(store).id
    assert store.thread(run) is None

    posted = ChatThread(run_id=run, channel="C01", plan_ts="1732267800.000100")
    store.save_thread(posted)
    assert store.thread(run) == posted
    assert store.thread(run) == ChatThread(
        run_id=run, channel="C01", plan_ts="1732267800.000100", approval_ts="", progress_ts=""
    )

    asked = ChatThread(run_id=run, channel="C01", plan_ts=posted.plan_ts, approval_ts="1.2")
    store.save_thread(asked)
    running = ChatThread(
        run_id=run, channel="C01", plan_ts=posted.plan_ts, approval_ts="1.2", progress_ts="1.3"
    )
    store.save_thread(running)
    assert store.thread(run) == running


def test_threads_are_kept_per_run(store: ConversationStore) -> None:
    one, two = new_run(store).id, new_run(store).id
    store.save_thread(ChatThread(run_id=one, channel="C01", plan_ts="1.1"))
    assert store.thread(two) is None
    store.save_thread(ChatThread(run_id=two, channel="C02", plan_ts="2.1"))
    assert store.thread(one) == ChatThread(run_id=one, channel="C01", plan_ts="1.1")


def test_a_message_leads_to_its_run_by_plan_or_approval_ts(store: ConversationStore) -> None:
    one, two, three = (new_run(store).id for _ in range(3))
    store.save_thread(ChatThread(run_id=one, channel="C01", plan_ts="1.1", approval_ts="1.2"))
    store.save_thread(ChatThread(run_id=two, channel="C01", plan_ts="2.1", progress_ts="2.3"))
    store.save_thread(ChatThread(run_id=three, channel="C02", plan_ts="1.1", approval_ts="3.2"))

    assert store.run_at("C01", "1.1") == one
    assert store.run_at("C01", "1.2") == one
    assert store.run_at("C01", "2.1") == two
    assert store.run_at("C02", "1.1") == three
    assert store.run_at("C02", "3.2") == three
    assert store.run_at("C02", "1.2") is None  # that message is in another channel
    assert store.run_at("C03", "1.1") is None
    assert store.run_at("C01", "2.3") is None  # the progress message holds no buttons
    assert store.run_at("C01", "9.9") is None
    assert store.run_at("C01", "") is None  # "" is no message, though it is two's approval_ts


def test_a_replaced_thread_is_found_by_its_new_messages_only(store: ConversationStore) -> None:
    run = new_run(store).id
    store.save_thread(ChatThread(run_id=run, channel="C01", plan_ts="1.1", approval_ts="1.2"))
    store.save_thread(ChatThread(run_id=run, channel="C01", plan_ts="1.1", approval_ts="1.5"))
    assert store.run_at("C01", "1.5") == run
    assert store.run_at("C01", "1.2") is None


def test_threads_of_an_unknown_run_are_refused(store: ConversationStore) -> None:
    new_run(store)
    with pytest.raises(UnknownRun, match="#4242"):
        store.save_thread(ChatThread(run_id=4242, channel="C01", plan_ts="1.1"))
    with pytest.raises(UnknownRun, match="#4242"):
        store.thread(4242)
    assert store.run_at("C01", "1.1") is None


# The database adapter only: its failures reach callers as `StoreUnavailable`.


@pytest.fixture
def broken_store(fresh_url: str) -> Iterator[tuple[SqlRunStore, int]]:
    """A store whose conversation tables were dropped behind its back, and a run it holds."""
    upgrade_schema(fresh_url)
    engine = create_store_engine(fresh_url)
    store = SqlRunStore(engine)
    run = new_run(store).id
    with engine.begin() as connection:
        for table in ("votes", "processed_events", "env_locks", "chat_threads"):
            connection.execute(text(f"DROP TABLE {table}"))
    yield store, run
    engine.dispose()


def test_database_failures_are_store_unavailable(broken_store: tuple[SqlRunStore, int]) -> None:
    store, run = broken_store
    calls: dict[str, Callable[[], object]] = {
        "recording @cy's approve of run": lambda: store.add_vote(vote(run)),
        "withdrawing @cy's approve of run": lambda: store.remove_vote(run, "@cy", APPROVE, PLAN),
        "reading the votes on run": lambda: store.votes(run),
        "noting event 'Ev01'": lambda: store.first_sighting("Ev01", AT),
        "locking prod": lambda: store.lock(env_lock()),
        "unlocking prod": lambda: store.unlock("prod"),
        "listing environment locks": store.locks,
        "saving the thread of run": lambda: store.save_thread(
            ChatThread(run_id=run, channel="C01", plan_ts="1.1")
        ),
        "reading the thread of run": lambda: store.thread(run),
        "finding the run of message 1.1 in C01": lambda: store.run_at("C01", "1.1"),
    }
    for doing, call in calls.items():
        with pytest.raises(StoreUnavailable, match=f"failed while {doing}"):
            call()


def test_a_message_is_found_through_the_indexes(fresh_url: str) -> None:
    """`run_at` looks each message kind up in its own (channel, ts) index: with every run posted in
    one channel, reading that channel's threads instead would grow with the history."""
    upgrade_schema(fresh_url)
    engine = create_store_engine(fresh_url)
    try:
        store = SqlRunStore(engine)
        new_run(store)
        _fill_threads(engine, doublings=12)  # 4096 runs
        plan = _plan_of(engine, lambda: store.run_at("C01", "1234.2"))
        assert store.run_at("C01", "1234.2") == 1234
    finally:
        engine.dispose()
    # Each index searched on both its columns, not on the channel with the ts filtered after.
    assert "Filter" not in plan
    for column in ("plan_ts", "approval_ts"):
        assert f"ix_chat_threads_channel_{column}" in plan
        assert re.search(rf"channel.{{0,30}}=.{{0,30}}AND.{{0,10}}{column}.{{0,20}}=", plan)


def _fill_threads(engine: Engine, doublings: int) -> None:
    """Double the one run `doublings` times and give each run a thread, most in one channel; then
    gather statistics, so the planner chooses as it would on a database in use."""
    runs = Base.metadata.tables["runs"]
    copied = [c for c in runs.columns if c.name != "id"]
    with engine.begin() as connection:
        for _ in range(doublings):
            connection.execute(insert(runs).from_select(copied, select(*copied)))
        connection.execute(
            text(
                "INSERT INTO chat_threads (run_id, channel, plan_ts, approval_ts, progress_ts)"
                " SELECT id, CASE WHEN id % 10 = 0 THEN 'C02' ELSE 'C01' END,"
                " id || '.1', id || '.2', id || '.3' FROM runs"
            )
        )
        connection.execute(text("ANALYZE"))


def _plan_of(engine: Engine, call: Callable[[], object]) -> str:
    """The query plan of the one SELECT on `chat_threads` that `call` sends, as one text."""
    sent: list[tuple[str, Any]] = []

    def note(_conn: object, _cursor: object, statement: str, parameters: Any, *_: object) -> None:
        if "FROM chat_threads" in statement:
            sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", note)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", note)
    ((statement, parameters),) = sent
    explain = "EXPLAIN QUERY PLAN" if engine.dialect.name == "sqlite" else "EXPLAIN"
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(f"{explain} {statement}", parameters).all()
    return "\n".join(str(row[-1]) for row in rows)
