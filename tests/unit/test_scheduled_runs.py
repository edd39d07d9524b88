"""Scheduled runs in the engine, on the in-memory MyST instance and the scheduler's twin.

The clock is the world's: a run is scheduled days ahead and its start is reached by moving the
clock, never by waiting.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta

import pytest

from adapters.memory.scheduler import MemoryScheduler
from bot.domain.approval import Decision
from bot.domain.errors import InvalidTransition
from bot.domain.inventory import Policy
from bot.domain.ports import JobKind
from bot.domain.run import RunState
from bot.domain.schedule import (
    Calendar,
    Freeze,
    MissedStart,
    ScheduleSettings,
    StartNotAllowed,
    UnknownWindow,
    Window,
)
from bot.domain.start_time import InvalidStartTime, StartInPast
from bot.engine.planning import UpgradeRequest
from bot.engine.scheduling import (
    AlreadyStarted,
    NotScheduled,
    ScheduleConflict,
    Scheduling,
    Verdict,
    request_of,
    what_changed,
)
from bot.engine.service import UpgradeService
from bot.runbooks import BUNDLED, load_runbooks
from tests.factories import make_plan
from tests.unit.memory_world import IMAGE, MemoryWorld, myst_world

ALICE, BOB = "U0ALICE01", "U0BOB0001"
NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)  # a Wednesday
SUNDAY_NIGHT = Window(
    name="sunday-night", days=frozenset({6}), start=time(1), end=time(5), tz="Europe/Berlin"
)
SETTINGS = ScheduleSettings(
    reminders=(timedelta(hours=24), timedelta(hours=1), timedelta(minutes=10)),
    missed_grace=timedelta(minutes=30),
)
MYST = UpgradeRequest(product="myst", version="3.9.1", environment="prod")


class Directory:
    """Everybody in Berlin; no user groups."""

    def group_members(self, group: str) -> frozenset[str]:
        return frozenset()

    def time_zone(self, user: str) -> str | None:
        return "Europe/Berlin"


class Setup:
    def __init__(self, world: MemoryWorld, settings: ScheduleSettings = SETTINGS) -> None:
        world.clock.advance((NOW - world.clock.now()).total_seconds())
        self.world = world
        self.scheduler = MemoryScheduler(world.clock)
        self.service = UpgradeService(
            catalog=load_runbooks(BUNDLED),
            inventory=world.inventory,
            ports=world.ports,
            store=world.store,
            directory=Directory(),
        )
        self.scheduling = Scheduling(self.service, self.scheduler, settings, Directory())

    def schedule(self, at: str | None = "sat 02:00", window: str | None = None) -> int:
        entry = self.scheduling.request(MYST, requester=ALICE, at=at, window=window)
        return entry.run.id

    def approve(self, run_id: int) -> None:
        self.service.vote(run_id, user=BOB, decision=Decision.APPROVE, digest=None, via="test")

    def go_to(self, moment: datetime) -> None:
        self.world.clock.advance((moment - self.world.clock.now()).total_seconds())


def setup(calendar: Calendar | None = None, **settings: object) -> Setup:
    policy = Policy(approvers=(BOB,), approvals_required=1, calendar=calendar or Calendar())
    return Setup(myst_world(policy), replace(SETTINGS, **settings))  # type: ignore[arg-type]


SATURDAY_2AM = datetime(2026, 12, 5, 1, 0, tzinfo=UTC)  # 02:00 in Berlin


def test_a_scheduled_run_is_planned_now_and_waits_for_its_time_with_its_reminders() -> None:
    s = setup()
    run_id = s.schedule()
    run = s.world.store.get(run_id)
    assert run.starts_at == SATURDAY_2AM
    assert run.state is RunState.AWAITING_APPROVAL
    assert run.plan.to_version == "3.9.1"
    jobs = s.scheduler.jobs(run_id)
    assert [(j.kind, j.at) for j in jobs] == [
        (JobKind.REMINDER, SATURDAY_2AM - timedelta(hours=24)),
        (JobKind.REMINDER, SATURDAY_2AM - timedelta(hours=1)),
        (JobKind.REMINDER, SATURDAY_2AM - timedelta(minutes=10)),
        (JobKind.START, SATURDAY_2AM),
    ]
    assert s.world.shell.commands == []  # nothing ran


def test_approval_ahead_of_time_waits_and_never_expires_before_the_start() -> None:
    s = setup()
    run_id = s.schedule()
    s.approve(run_id)
    run = s.world.store.get(run_id)
    assert run.state is RunState.APPROVED
    assert s.service.approval(run).expires_at == SATURDAY_2AM
    assert s.service.active() == []  # approved, but waiting for its time: not active
    s.go_to(SATURDAY_2AM - timedelta(minutes=1))  # long past the policy's 4 h expiry
    assert s.service.expire_due() == []
    assert s.scheduling.due(run_id).verdict is Verdict.NOT_DUE  # not yet
    assert [e.run.id for e in s.scheduling.scheduled()] == [run_id]


def test_at_its_time_an_approved_run_starts_once() -> None:
    s = setup()
    run_id = s.schedule()
    s.approve(run_id)
    s.go_to(SATURDAY_2AM)
    check = s.scheduling.due(run_id)
    assert check.verdict is Verdict.START
    assert check.late == timedelta(0)
    assert s.scheduling.due(run_id).verdict is Verdict.NOT_DUE  # a second caller: no
    assert s.scheduler.jobs(run_id) == []


def test_an_unapproved_run_does_not_start_and_ends_expired_saying_why() -> None:
    s = setup()
    run_id = s.schedule()
    s.go_to(SATURDAY_2AM)
    check = s.scheduling.due(run_id)
    assert check.verdict is Verdict.NOT_APPROVED
    assert check.run.state is RunState.EXPIRED
    assert "not approved by its start time (1 more approval needed)" in check.reason
    assert s.world.store.events(run_id)[-1].reason == check.reason
    assert check.approval is not None
    assert check.approval.waiting_for == (BOB,)


def test_a_changed_instance_version_means_the_approvals_no_longer_apply() -> None:
    s = setup()
    entry = s.scheduling.request(
        replace(MYST, version="3.10.0"), requester=ALICE, at="sat 02:00", window=None
    )
    s.approve(entry.run.id)
    s.world.engine.pull(f"{IMAGE}:3.9.1")  # someone upgraded by hand meanwhile
    s.world.engine.tag(f"{IMAGE}:3.9.1", "myst-studio")
    s.world.engine.run_container("myst-studio", "myst-studio")
    s.go_to(SATURDAY_2AM)
    check = s.scheduling.due(entry.run.id)
    assert check.verdict is Verdict.PLAN_CHANGED
    assert check.run.state is RunState.CANCELLED
    assert "prod/myst-prod now runs 3.9.1" in check.reason
    assert "it ran 3.9.0.3" in check.reason


def test_a_plan_that_cannot_be_built_again_does_not_start() -> None:
    s = setup()
    run_id = s.schedule()
    s.approve(run_id)
    s.world.engine.pull(f"{IMAGE}:3.9.1")
    s.world.engine.tag(f"{IMAGE}:3.9.1", "myst-studio")
    s.world.engine.run_container("myst-studio", "myst-studio")
    s.go_to(SATURDAY_2AM)
    check = s.scheduling.due(run_id)
    assert check.verdict is Verdict.NOT_REBUILT
    assert "already runs MyST Studio 3.9.1" in check.reason


def test_what_changed_names_the_runbook_too() -> None:
    old = make_plan()
    assert what_changed(old, replace(old, runbook_digest="other", digest="")) == (
        "the myst-studio runbook changed"
    )
    assert request_of(old).version == old.to_version
    assert request_of(old).instance == old.instance


def test_a_start_missed_while_the_bot_was_down_runs_late_within_the_grace() -> None:
    s = setup()
    run_id = s.schedule()
    s.approve(run_id)
    s.go_to(SATURDAY_2AM + timedelta(minutes=5))
    s.scheduler.restart()  # the bot came back after the start time
    check = s.scheduling.due(run_id)
    assert check.verdict is Verdict.START
    assert check.late == timedelta(minutes=5)


def test_with_missed_start_report_a_missed_start_is_reported_not_run() -> None:
    s = setup(missed_start=MissedStart.REPORT)
    run_id = s.schedule()
    s.approve(run_id)
    s.go_to(SATURDAY_2AM + timedelta(minutes=5))
    s.scheduler.restart()
    check = s.scheduling.due(run_id)
    assert check.verdict is Verdict.MISSED
    assert check.run.state is RunState.EXPIRED
    assert "missed_start: report" in check.reason


def test_beyond_the_grace_the_sweep_ends_a_run_whose_start_was_lost() -> None:
    s = setup()
    run_id = s.schedule()
    s.approve(run_id)
    s.scheduler.cancel(run_id)  # the job is lost
    s.go_to(SATURDAY_2AM + timedelta(minutes=31))
    [check] = s.scheduling.overdue()
    assert check.verdict is Verdict.MISSED
    assert "more than the 30 min" in check.reason
    assert s.scheduling.overdue() == []


def test_reschedule_sets_the_jobs_again() -> None:
    s = setup()
    run_id = s.schedule()
    s.scheduler.cancel(run_id)
    s.go_to(SATURDAY_2AM - timedelta(minutes=30))
    assert s.scheduling.reschedule() == 1
    assert [j.kind for j in s.scheduler.jobs(run_id)] == [JobKind.REMINDER, JobKind.START]


def test_each_reminder_is_given_once() -> None:
    s = setup()
    run_id = s.schedule()
    entry = s.scheduling.reminder(run_id, timedelta(hours=1))
    assert entry is not None
    assert entry.run.id == run_id
    assert s.scheduling.reminder(run_id, timedelta(hours=1)) is None
    assert s.scheduling.reminder(run_id, timedelta(minutes=10)) is not None


def test_bad_times_each_get_their_sentence() -> None:
    s = setup()
    with pytest.raises(InvalidStartTime):
        s.schedule(at="someday")
    with pytest.raises(StartInPast, match="which has passed"):
        s.schedule(at="2026-12-01T02:00+01:00")
    assert s.world.store.runs() == []


def test_a_window_sets_the_start_to_its_next_opening_and_unknown_ones_are_refused() -> None:
    s = setup(Calendar(windows=(SUNDAY_NIGHT,)))
    run_id = s.schedule(at=None, window="sunday-night")
    assert s.world.store.get(run_id).starts_at == datetime(2026, 12, 6, 0, 0, tzinfo=UTC)
    assert s.scheduling.scheduled()[0].window == "sunday-night"
    with pytest.raises(UnknownWindow, match="no maintenance window `saturday`"):
        s.schedule(at=None, window="saturday")


def test_a_start_outside_the_windows_or_in_a_freeze_is_refused_with_the_next_slot() -> None:
    freeze = Freeze(
        name="release",
        starts=datetime(2026, 12, 6, 0, tzinfo=UTC),
        ends=datetime(2026, 12, 6, 2, tzinfo=UTC),
    )
    s = setup(Calendar(windows=(SUNDAY_NIGHT,), freezes=(freeze,)))
    with pytest.raises(StartNotAllowed) as caught:
        s.schedule(at="sat 02:00")
    assert "outside every maintenance window" in caught.value.problem
    assert "Sun 2026-12-06 03:00 CET" in caught.value.fix  # after the freeze
    with pytest.raises(StartNotAllowed, match="change freeze `release`"):
        s.schedule(at="sun 01:30")
    with pytest.raises(StartNotAllowed, match="outside every maintenance window"):
        s.scheduling.check_now(MYST, requester=ALICE)  # and a run asked for now, too


def test_a_second_schedule_in_the_same_window_is_refused() -> None:
    s = setup(Calendar(windows=(SUNDAY_NIGHT,)))
    first = s.schedule(at="sun 01:00")
    with pytest.raises(ScheduleConflict) as caught:
        s.schedule(at="sun 03:00")
    assert f"already has run #{first} scheduled" in caught.value.problem
    assert "in the window sunday-night" in caught.value.problem
    assert f"/upgrade schedule cancel {first}" in caught.value.fix
    s.schedule(at="2026-12-13T01:30+01:00")  # the next week's window is free


def test_cancel_before_the_start_and_not_after() -> None:
    s = setup()
    run_id = s.schedule()
    cancelled = s.scheduling.cancel(run_id, user=ALICE)
    assert cancelled.state is RunState.CANCELLED
    assert s.scheduler.jobs(run_id) == []
    with pytest.raises(InvalidTransition, match="nothing to cancel"):
        s.scheduling.cancel(run_id, user=ALICE)

    started = s.schedule()
    s.approve(started)
    s.go_to(SATURDAY_2AM)
    assert s.scheduling.due(started).verdict is Verdict.START
    s.service.execute(started)
    with pytest.raises(AlreadyStarted) as caught:
        s.scheduling.cancel(started, user=ALICE)
    assert "already started" in caught.value.problem
    assert f"/upgrade rollback {started}" in caught.value.fix

    now = s.service.request(MYST, requester=ALICE)
    with pytest.raises(NotScheduled, match="not scheduled"):
        s.scheduling.cancel(now.run.id, user=ALICE)


def test_a_run_asked_for_now_in_a_freeze_is_refused_and_one_approved_outside_is_cancelled() -> None:
    s = setup()
    approval = s.service.request(MYST, requester=ALICE)
    frozen = Calendar(freezes=(Freeze(name="f", starts=NOW, ends=NOW + timedelta(days=1)),))
    s.service.inventory = replace(  # the config now has a freeze (as after a reload)
        s.service.inventory,
        environments={
            "prod": replace(
                s.service.inventory.environments["prod"],
                policy=replace(s.service.policy("prod"), calendar=frozen),
            )
        },
    )
    s.approve(approval.run.id)
    run = s.service.execute(approval.run.id)
    assert run.state is RunState.CANCELLED
    assert "change freeze `f`" in s.world.store.events(run.id)[-1].reason
