"""The `Scheduler` contract, run against the memory twin and APScheduler on SQLite and PostgreSQL.

The twin's time is moved; APScheduler's is the real one, so its jobs are set a fraction of a
second ahead and the suite waits for them (never for minutes). What only the database can do
(jobs outliving their process, the lease that lets one process schedule) is tested on SQLite
and PostgreSQL alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.memory.clock import FakeClock
from adapters.memory.scheduler import MemoryScheduler
from adapters.scheduler import ApsScheduler
from adapters.scheduler_lease import SqlLease
from adapters.sql_engine import create_store_engine
from adapters.sql_store import upgrade_schema
from bot.domain.ports import JobKind, Scheduler
from tests.hostkit.databases import postgres_schema

AHEAD = 0.6  # seconds: how far ahead the real scheduler's jobs are set
PATIENCE = 8.0  # seconds: how long a job may take to be called before the test fails
LEASE = timedelta(seconds=1.5)


@dataclass
class Work:
    """A `ScheduledWork` that notes each call."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start_due(self, run_id: int) -> None:
        with self.lock:
            self.calls.append(("start", run_id))

    def remind(self, run_id: int, before: timedelta) -> None:
        with self.lock:
            self.calls.append(("remind", run_id, before))

    def behind_latest(self) -> None:
        with self.lock:
            self.calls.append(("digest",))

    def seen(self) -> list[tuple[Any, ...]]:
        with self.lock:
            return list(self.calls)


class Harness:
    """One scheduler under test, its work, and a way to let time pass."""

    scheduler: Scheduler
    work: Work

    def now(self) -> datetime:
        raise NotImplementedError

    def reach(self, moment: datetime, *, calls: int) -> list[tuple[Any, ...]]:
        """Let time pass to `moment` and return the calls once there are `calls` of them."""
        raise NotImplementedError


class MemoryHarness(Harness):
    def __init__(self) -> None:
        self.clock = FakeClock(datetime.now(UTC))
        self.twin = MemoryScheduler(self.clock)
        self.work = Work()
        self.twin.start(self.work)
        self.scheduler = self.twin

    def now(self) -> datetime:
        return self.clock.now()

    def reach(self, moment: datetime, *, calls: int) -> list[tuple[Any, ...]]:
        if moment > self.clock.now():
            self.clock.advance((moment - self.clock.now()).total_seconds())
        self.twin.run_due()
        return self.work.seen()


class ApsHarness(Harness):
    def __init__(self, url: str) -> None:
        self.aps = ApsScheduler(url, lease=LEASE)
        self.work = Work()
        self.aps.start(self.work)
        self.scheduler = self.aps
        waited = time.monotonic() + PATIENCE
        while self.aps.on_duty_since() is None:
            assert time.monotonic() < waited, "the scheduler never took the lease"
            time.sleep(0.02)

    def now(self) -> datetime:
        return datetime.now(UTC)

    def reach(self, moment: datetime, *, calls: int) -> list[tuple[Any, ...]]:
        time.sleep(max(0.0, (moment - self.now()).total_seconds()))
        deadline = time.monotonic() + PATIENCE
        while len(self.work.seen()) < calls and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.1)  # long enough for a wrong second call to show up
        return self.work.seen()


def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'bot.db'}"
        upgrade_schema(url)
        yield url
        return
    with postgres_schema(request.getfixturevalue("services"), "scheduler") as url:
        upgrade_schema(url)
        yield url


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    if request.param == "memory":
        yield MemoryHarness()
        return
    for url in sql_url(request, tmp_path):
        aps = ApsHarness(url)
        try:
            yield aps
        finally:
            aps.aps.shutdown()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from sql_url(request, tmp_path)


def soon(h: Harness, seconds: float = AHEAD) -> datetime:
    return h.now() + timedelta(seconds=seconds)


# -- the contract -------------------------------------------------------------------------------


def test_a_start_calls_its_work_once_at_its_time(harness: Harness) -> None:
    at = soon(harness)
    harness.scheduler.schedule_start(7, at)
    assert harness.work.seen() == []
    assert harness.reach(at, calls=1) == [("start", 7)]
    assert harness.scheduler.jobs() == []


def test_reminders_carry_their_offset_and_jobs_are_listed_earliest_first(
    harness: Harness,
) -> None:
    start = soon(harness, 3600)
    hour, ten = timedelta(hours=1), timedelta(minutes=10)
    harness.scheduler.schedule_start(7, start)
    harness.scheduler.schedule_reminder(7, start - ten, ten)
    harness.scheduler.schedule_reminder(7, start - hour + timedelta(seconds=AHEAD), hour)
    harness.scheduler.schedule_start(8, start - timedelta(minutes=30))
    jobs = harness.scheduler.jobs()
    assert [(j.run_id, j.kind, j.before) for j in jobs] == [
        (7, JobKind.REMINDER, hour),
        (8, JobKind.START, timedelta(0)),
        (7, JobKind.REMINDER, ten),
        (7, JobKind.START, timedelta(0)),
    ]
    assert [j.at for j in harness.scheduler.jobs(7)] == [
        start - hour + timedelta(seconds=AHEAD),
        start - ten,
        start,
    ]
    assert all(j.at.utcoffset() == timedelta(0) for j in jobs)
    assert harness.reach(jobs[0].at, calls=1) == [("remind", 7, hour)]


def test_scheduling_a_start_again_replaces_it(harness: Harness) -> None:
    harness.scheduler.schedule_start(7, soon(harness, 3600))
    later = soon(harness, 7200)
    harness.scheduler.schedule_start(7, later)
    [job] = harness.scheduler.jobs(7)
    assert job.at == later


def test_cancel_removes_every_job_of_one_run_only(harness: Harness) -> None:
    start = soon(harness, 3600)
    half = timedelta(minutes=30)
    harness.scheduler.schedule_start(7, start)
    harness.scheduler.schedule_reminder(7, start - half, half)
    harness.scheduler.schedule_start(8, start)
    assert harness.scheduler.cancel(7) == 2
    assert harness.scheduler.cancel(7) == 0
    assert [j.run_id for j in harness.scheduler.jobs()] == [8]


def test_a_job_whose_time_has_passed_runs_as_soon_as_possible(harness: Harness) -> None:
    harness.scheduler.schedule_start(9, harness.now() - timedelta(hours=1))
    assert harness.reach(harness.now(), calls=1) == [("start", 9)]


def test_the_digest_repeats_and_asking_again_does_not_push_it_back(harness: Harness) -> None:
    harness.scheduler.repeat_behind_latest(timedelta(seconds=1))
    first = soon(harness, 1.0)
    harness.scheduler.repeat_behind_latest(timedelta(seconds=1))
    assert harness.reach(first, calls=1) == [("digest",)]
    assert harness.reach(first + timedelta(seconds=1), calls=2) == [("digest",), ("digest",)]


def test_a_scheduling_process_says_since_when(harness: Harness) -> None:
    since = harness.scheduler.on_duty_since()
    assert since is not None
    assert since <= harness.now()


# -- the database's own ---------------------------------------------------------------------------


def test_jobs_outlive_the_process_that_set_them_and_run_once(database: str) -> None:
    first = ApsHarness(database)
    at = soon(first, 1.5)
    first.scheduler.schedule_start(7, at)
    first.aps.shutdown()  # before the start time: gone, like a killed process
    second = ApsHarness(database)  # a new process on the same database, after its time
    try:
        assert second.reach(at, calls=1) == [("start", 7)]
        assert first.work.seen() == []
        assert second.scheduler.jobs() == []
    finally:
        second.aps.shutdown()


def test_a_process_runs_one_scheduler(database: str) -> None:
    one = ApsScheduler(database, lease=LEASE)
    one.start(Work())
    try:
        with pytest.raises(RuntimeError, match="already runs a scheduler"):
            ApsScheduler(database, lease=LEASE).start(Work())
    finally:
        one.shutdown()


def test_the_lease_is_held_by_one_holder_until_it_runs_out_or_is_released(database: str) -> None:
    engine = create_store_engine(database)
    clock = FakeClock(datetime(2026, 12, 2, 9, tzinfo=UTC))
    a, b = (SqlLease(engine, clock=clock, length=LEASE, holder=h) for h in ("a", "b"))
    try:
        taken = a.hold()
        assert taken == clock.now()
        assert b.hold() is None
        clock.advance(1)
        assert a.hold() == taken  # a renewal keeps its start
        assert b.hold() is None
        clock.advance(LEASE.total_seconds())  # a stopped renewing: it ran out
        assert b.hold() == clock.now()
        assert a.hold() is None  # too late: b has it now
        current = b.current()
        assert current is not None
        assert current[0] == "b"
        b.release()
        assert a.hold() == clock.now()
        b.release()  # not b's any more: changes nothing
        assert a.current() is not None
    finally:
        engine.dispose()


def test_of_many_taking_the_lease_at_once_exactly_one_gets_it(database: str) -> None:
    engine = create_store_engine(database)
    clock = FakeClock(datetime(2026, 12, 2, 9, tzinfo=UTC))
    leases = [SqlLease(engine, clock=clock, length=LEASE, holder=f"h{i}") for i in range(8)]
    try:
        for _ in range(3):  # a fresh row, then a run-out one, then again
            with ThreadPoolExecutor(len(leases)) as pool:
                held = list(pool.map(lambda lease: lease.hold(), leases))
            assert sum(h is not None for h in held) == 1
            clock.advance(LEASE.total_seconds() + 1)
    finally:
        engine.dispose()
