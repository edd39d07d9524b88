"""Scheduled runs: asked for at a time or in a window, reminded of, and started at their time.

A scheduled run is an ordinary run with a start time. It takes its approvals ahead of time and
then waits, approved, for the scheduler to say its time has come. At its start the plan is built
again from the same request: if it comes out different (the instance's version or the runbook
changed), the approvals no longer apply and the run does not start. An unapproved run does not
start either; neither does one whose time passed while no bot process was scheduling, unless the
policy lets it start late within the grace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from enum import StrEnum

from bot.domain.errors import BotError, InvalidTransition, UserError
from bot.domain.plan import Plan
from bot.domain.ports import Directory, Scheduler
from bot.domain.run import PENDING_STATES, Run, RunState
from bot.domain.schedule import (
    Calendar,
    Lateness,
    ScheduleSettings,
    StartNotAllowed,
    lateness,
    local_text,
    reminder_times,
    zone_named,
)
from bot.domain.start_time import parse_start
from bot.engine.approvals import Approval
from bot.engine.planning import UpgradeRequest
from bot.engine.service import UpgradeService

ACTOR = "bot (schedule)"


class ScheduleConflict(UserError):
    """The instance already has a run scheduled in the same window."""


class NotScheduled(UserError):
    """`schedule cancel` named a run that has no start time."""


class AlreadyStarted(InvalidTransition):
    """`schedule cancel` named a run that has started: it cannot be unscheduled."""


@dataclass(frozen=True, kw_only=True)
class ScheduledRun:
    """A run waiting for its start time, with its approval so far and the window it starts in."""

    approval: Approval
    window: str = ""  # "" where the environment has no windows

    @property
    def run(self) -> Run:
        return self.approval.run

    @property
    def starts_at(self) -> datetime:
        assert self.run.starts_at is not None  # only runs with a start time are listed
        return self.run.starts_at


class Verdict(StrEnum):
    START = "start"
    NOT_APPROVED = "not_approved"
    MISSED = "missed"
    PLAN_CHANGED = "plan_changed"
    NOT_REBUILT = "not_rebuilt"  # the plan could not be built again
    NOT_DUE = "not_due"  # not pending any more, not scheduled, or not yet: nothing to do


@dataclass(frozen=True, kw_only=True)
class StartCheck:
    """What became of a run whose start time came; `reason` says why it did not start."""

    verdict: Verdict
    run: Run
    approval: Approval | None = None
    late: timedelta = field(default=timedelta(0))
    reason: str = ""


def request_of(plan: Plan) -> UpgradeRequest:
    """The request that gives `plan` again, given the same instance, runbook and config."""
    return UpgradeRequest(
        product=plan.product,
        version=plan.to_version,
        environment=plan.environment,
        instance=None if plan.members else plan.instance,
        strategy=plan.strategy,
        allow_downgrade=plan.downgrade,
        options={name: "yes" if on else "no" for name, on in plan.options.items()},
    )


def instance_keys(plan: Plan) -> set[str]:
    return {m.instance_key for m in plan.members} or {plan.instance_key}


def what_changed(old: Plan, new: Plan) -> str:
    changes = []
    if old.from_version != new.from_version:
        changes.append(
            f"{old.instance_key} now runs {new.from_version}, and the plan was made when it ran "
            f"{old.from_version}"
        )
    if old.runbook_digest != new.runbook_digest:
        changes.append(f"the {old.product} runbook changed")
    return "; ".join(changes) or "its steps or values are no longer the same"


class Scheduling:
    """The engine's side of scheduled runs, for every chat surface."""

    def __init__(
        self,
        service: UpgradeService,
        scheduler: Scheduler,
        settings: ScheduleSettings,
        directory: Directory,
    ) -> None:
        self.service = service
        self.scheduler = scheduler
        self.settings = settings
        self._directory = directory

    def zone(self, user: str) -> tzinfo:
        """The user's time zone as the chat workspace knows it (UTC when it does not)."""
        return zone_named(self._directory.time_zone(user))

    # -- asking ---------------------------------------------------------------------------------

    def start_time(
        self, request: UpgradeRequest, *, requester: str, at: str | None, window: str | None
    ) -> datetime:
        """When a run asked for with `at=` and/or `window=` would start. Raises a `UserError`
        for a time that cannot be read, has passed, is outside the windows or in a freeze, or
        falls in a window where the instance already has a run scheduled."""
        now, zone = self.service.clock.now(), self.zone(requester)
        runbook = self.service.catalog.find(request.product)
        env, instances = self.service.inventory.targets(
            runbook.product, request.environment, request.instance
        )
        calendar = env.policy.calendar
        if window is not None:
            calendar.window(window, env.name)
        if at is not None:
            starts_at = parse_start(at, now=now, zone=zone)
        else:
            found = calendar.next_start(now, window)
            if found is None:
                raise StartNotAllowed(
                    f"The window `{window}` of {env.name} has no opening outside its freezes "
                    "within a year.",
                    "Check the windows and freezes in the config.",
                )
            starts_at = found
        calendar.check(starts_at, environment=env.name, zone=zone, window=window)
        self._check_free({i.key for i in instances}, starts_at, calendar, zone)
        return starts_at

    def check_now(self, request: UpgradeRequest, *, requester: str) -> None:
        """Refuse a run asked for now outside the windows or inside a freeze, saying when the
        next allowed start is (to ask for with `at=`)."""
        runbook = self.service.catalog.find(request.product)
        env, _ = self.service.inventory.targets(
            runbook.product, request.environment, request.instance
        )
        now, calendar = self.service.clock.now(), env.policy.calendar
        if not calendar.allows(now):  # the reader's zone is looked up only to say why not
            calendar.check(now, environment=env.name, zone=self.zone(requester))

    def request(
        self, request: UpgradeRequest, *, requester: str, at: str | None, window: str | None
    ) -> ScheduledRun:
        """Plan now, store the run with its start time, open it for approval, set its jobs."""
        starts_at = self.start_time(request, requester=requester, at=at, window=window)
        plan = self.service.plan(request)
        approval = self.service.open(plan, requester, starts_at=starts_at)
        self._set_jobs(approval.run)
        return self._entry(approval)

    def _check_free(
        self, keys: set[str], starts_at: datetime, calendar: Calendar, zone: tzinfo
    ) -> None:
        slot = calendar.slot_at(starts_at)
        for other in self.scheduled():
            if keys & instance_keys(other.run.plan) and calendar.slot_at(other.starts_at) == slot:
                where = f" in the window {slot.window}" if slot else ""
                raise ScheduleConflict(
                    f"{', '.join(sorted(keys & instance_keys(other.run.plan)))} already has run "
                    f"#{other.run.id} scheduled for {local_text(other.starts_at, zone)}{where}.",
                    f"Cancel it first with `/upgrade schedule cancel {other.run.id}`"
                    + (", or choose another window." if slot else "."),
                )

    # -- reading --------------------------------------------------------------------------------

    def scheduled(self) -> list[ScheduledRun]:
        """Runs waiting for their start time, soonest first."""
        runs = self.service.store.runs(states=tuple(PENDING_STATES), limit=1000)
        waiting = sorted((r for r in runs if r.starts_at is not None), key=_start)
        return [self._entry(self.service.approval(r)) for r in waiting]

    def _entry(self, approval: Approval) -> ScheduledRun:
        run = approval.run
        calendar = self.service.policy(run.plan.environment).calendar
        slot = calendar.slot_at(run.starts_at) if run.starts_at is not None else None
        return ScheduledRun(approval=approval, window=slot.window if slot else "")

    # -- jobs -----------------------------------------------------------------------------------

    def _set_jobs(self, run: Run) -> None:
        assert run.starts_at is not None
        self.scheduler.schedule_start(run.id, run.starts_at)
        now = self.service.clock.now()
        for before, at in reminder_times(run.starts_at, self.settings.reminders, now):
            self.scheduler.schedule_reminder(run.id, at, before)

    def reschedule(self) -> int:
        """Set the jobs of every scheduled run again (when this process begins scheduling): a
        job lost with a crash between storing a run and scheduling it is back. Idempotent."""
        entries = self.scheduled()
        for entry in entries:
            self._set_jobs(entry.run)
        return len(entries)

    def reminder(self, run_id: int, before: timedelta) -> ScheduledRun | None:
        """The run a reminder is for, if it is still waiting, this reminder was not given yet
        (by any process), and no closer reminder is due too (after downtime, one is enough)."""
        run, now = self.service.store.get(run_id), self.service.clock.now()
        if not run.pending or run.starts_at is None or run.starts_at <= now:
            return None
        starts_at = run.starts_at
        if any(o < before and starts_at - o <= now for o in self.settings.reminders):
            return None
        key = f"remind:{run_id}:{int(before.total_seconds())}"
        if not self.service.store.first_sighting(key, now):
            return None
        return self._entry(self.service.approval(run))

    # -- starting -------------------------------------------------------------------------------

    def due(self, run_id: int) -> StartCheck:
        """Decide, at its start time, whether a scheduled run starts; move it out of the way
        (expired or cancelled, with the reason) when it does not. A START is given once per run,
        across processes: the caller then executes it."""
        store, now = self.service.store, self.service.clock.now()
        run = store.get(run_id)
        if not run.pending or run.starts_at is None or run.starts_at > now:
            return StartCheck(verdict=Verdict.NOT_DUE, run=run)
        late = now - run.starts_at
        timing = lateness(run.starts_at, now, self.scheduler.on_duty_since(), self.settings)
        if timing is Lateness.MISSED:
            return self._end(run, RunState.EXPIRED, Verdict.MISSED, self._missed(late))
        approval = self.service.approval(run)
        if run.state is not RunState.APPROVED:
            needed = approval.tally.missing or approval.tally.required
            reason = (
                f"it was not approved by its start time ({needed} more approval"
                f"{'s' if needed != 1 else ''} needed)"
            )
            return self._end(run, RunState.EXPIRED, Verdict.NOT_APPROVED, reason, approval)
        try:
            plan = self.service.plan(request_of(run.plan))
        except BotError as exc:
            reason = f"its plan could not be built again before the start: {exc}"
            return self._end(run, RunState.CANCELLED, Verdict.NOT_REBUILT, reason)
        if plan.digest != run.plan.digest:
            reason = f"the plan changed since it was approved: {what_changed(run.plan, plan)}"
            return self._end(run, RunState.CANCELLED, Verdict.PLAN_CHANGED, reason)
        if not store.first_sighting(f"start:{run_id}", now):
            return StartCheck(verdict=Verdict.NOT_DUE, run=run)  # another caller starts it
        self.scheduler.cancel(run_id)  # reminders left over, if the clock jumped
        started_late = late if timing is Lateness.LATE else timedelta(0)
        return StartCheck(verdict=Verdict.START, run=run, approval=approval, late=started_late)

    def overdue(self) -> list[StartCheck]:
        """Scheduled runs past their start by more than the grace (their job was lost, or the
        start was claimed by a process that died): each ends as missed."""
        now = self.service.clock.now()
        return [
            self.due(entry.run.id)
            for entry in self.scheduled()
            if now - entry.starts_at > self.settings.missed_grace
        ]

    def _missed(self, late: timedelta) -> str:
        minutes = max(1, round(late.total_seconds() / 60))
        if late > self.settings.missed_grace:
            grace = round(self.settings.missed_grace.total_seconds() / 60)
            return (
                f"its start time passed {minutes} min ago while the bot was not scheduling, "
                f"more than the {grace} min a late start is allowed"
            )
        return (
            f"its start time passed {minutes} min ago while the bot was not scheduling, and the "
            "policy is to report missed starts rather than start late (missed_start: report)"
        )

    def _end(
        self,
        run: Run,
        target: RunState,
        verdict: Verdict,
        reason: str,
        approval: Approval | None = None,
    ) -> StartCheck:
        try:
            ended = self.service.store.transition(
                run.id, run.state, target, at=self.service.clock.now(), actor=ACTOR, reason=reason
            )
        except InvalidTransition:
            return StartCheck(verdict=Verdict.NOT_DUE, run=self.service.store.get(run.id))
        self.scheduler.cancel(run.id)
        return StartCheck(verdict=verdict, run=ended, approval=approval, reason=reason)

    # -- cancelling -----------------------------------------------------------------------------

    def cancel(self, run_id: int, *, user: str) -> Run:
        """Cancel a scheduled run that has not started (requester or approver only)."""
        run = self.service.store.get(run_id)
        if run.starts_at is None:
            raise NotScheduled(
                f"Run #{run_id} is not scheduled: it starts as soon as it is approved.",
                f"To stop it before then, use `/upgrade cancel {run_id}`.",
            )
        if not run.pending:
            state = run.state.value.replace("_", " ")
            if any(e.to_state is RunState.RUNNING for e in self.service.store.events(run_id)):
                raise AlreadyStarted(
                    f"Run #{run_id} already started (it is {state}), so it can no longer be "
                    "unscheduled.",
                    f"See `/upgrade status {run_id}`; once it has ended, "
                    f"`/upgrade rollback {run_id}` undoes it.",
                )
            raise InvalidTransition(
                f"Run #{run_id} is {state}: it will not start, so there is nothing to cancel.",
                "See `/upgrade schedule list` for the runs still scheduled.",
            )
        cancelled = self.service.cancel(run_id, user=user)
        self.scheduler.cancel(run_id)
        return cancelled

    def forget(self, run_id: int) -> None:
        """Drop the jobs of a run that ended some other way (cancelled, rejected)."""
        self.scheduler.cancel(run_id)


def _start(run: Run) -> datetime:
    assert run.starts_at is not None
    return run.starts_at
