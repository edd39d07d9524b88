"""A run: one plan on its way through explicit states, and what each step did."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from bot.domain.errors import InvalidTransition
from bot.domain.output import CommandResult
from bot.domain.plan import Plan, PlannedStep
from bot.domain.runbook import GateAction


class RunState(StrEnum):
    PLANNED = "planned"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    RUNNING = "running"
    WAITING = "waiting"  # paused at a gate until an approver says go on
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


S = RunState
TRANSITIONS: Mapping[RunState, frozenset[RunState]] = {
    S.PLANNED: frozenset({S.AWAITING_APPROVAL, S.CANCELLED}),
    S.AWAITING_APPROVAL: frozenset({S.APPROVED, S.REJECTED, S.EXPIRED, S.CANCELLED}),
    S.APPROVED: frozenset({S.RUNNING, S.EXPIRED, S.CANCELLED}),
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.INTERRUPTED, S.WAITING}),
    S.WAITING: frozenset({S.RUNNING, S.FAILED, S.CANCELLED}),
    S.SUCCEEDED: frozenset({S.ROLLING_BACK}),
    S.FAILED: frozenset({S.ROLLING_BACK}),
    S.ROLLING_BACK: frozenset({S.ROLLED_BACK, S.ROLLBACK_FAILED, S.INTERRUPTED}),
    S.INTERRUPTED: frozenset({S.RUNNING, S.ROLLING_BACK, S.CANCELLED}),
    S.ROLLED_BACK: frozenset(),
    S.ROLLBACK_FAILED: frozenset(),
    S.REJECTED: frozenset(),
    S.EXPIRED: frozenset(),
    S.CANCELLED: frozenset(),
}

# States in which a run holds its instance: no other run may start there meanwhile. A run waiting
# at a gate holds it, and so does an interrupted run until someone resumes, rolls back or cancels.
ACTIVE_STATES = frozenset({S.RUNNING, S.WAITING, S.ROLLING_BACK, S.INTERRUPTED})
FINAL_STATES = frozenset(state for state, nexts in TRANSITIONS.items() if not nexts)
# States in which a process executes the run: it holds a claim on it (a lease in the store) and
# renews it; a run whose claim ran out is taken over as interrupted by another process.
HELD_STATES = frozenset({S.RUNNING, S.ROLLING_BACK})
# Before the run starts: a scheduled run waits in these until its start time.
PENDING_STATES = frozenset({S.PLANNED, S.AWAITING_APPROVAL, S.APPROVED})


def check_transition(run_id: int, current: RunState, target: RunState) -> None:
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(
            f"Run #{run_id} is {current.value.replace('_', ' ')}, so it cannot become "
            f"{target.value.replace('_', ' ')}.",
            f"See `status {run_id}` for what it is doing.",
        )


@dataclass(frozen=True, kw_only=True)
class Run:
    """A plan with an id, a requester and a state; a scheduled run also has its start time."""

    id: int
    plan: Plan
    state: RunState
    requested_by: str
    created_at: datetime
    updated_at: datetime
    starts_at: datetime | None = None  # None: it starts as soon as it is approved

    @property
    def pending(self) -> bool:
        """Not started and not ended: still planned, awaiting approval, or approved."""
        return self.state in PENDING_STATES

    def moved_to(self, target: RunState, at: datetime) -> Run:
        check_transition(self.id, self.state, target)
        return replace(self, state=target, updated_at=at)


@dataclass(frozen=True, kw_only=True)
class RunEvent:
    """One transition, as the audit trail keeps it."""

    run_id: int
    at: datetime
    from_state: RunState | None
    to_state: RunState
    actor: str
    reason: str = ""


class Phase(StrEnum):
    UPGRADE = "upgrade"
    ROLLBACK = "rollback"


class StepStatus(StrEnum):
    STARTED = "started"  # recorded before the step runs: after a crash we know it may have run
    WAITING = "waiting"  # a gate, waiting for an approver
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, kw_only=True)
class VerificationResult:
    description: str
    passed: bool
    evidence: str


@dataclass(frozen=True, kw_only=True)
class StepResult:
    """What one step did: committed when it starts and again when it ends."""

    run_id: int
    phase: Phase
    number: int
    step_id: str
    title: str
    status: StepStatus
    started_at: datetime
    finished_at: datetime | None = None
    result: CommandResult | None = None
    captures: Mapping[str, str] = field(default_factory=dict)
    verifications: tuple[VerificationResult, ...] = ()
    error: str = ""

    @property
    def duration(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


REFUSED = "Refused to run"  # the start of the error of a step refused before it ran


def _started(results: Sequence[StepResult]) -> set[str]:
    """The upgrade steps that started. A step refused before it ran changed nothing."""
    return {
        r.step_id for r in results if r.phase is Phase.UPGRADE and not r.error.startswith(REFUSED)
    }


def _changed(steps: Sequence[PlannedStep], started: set[str]) -> set[str]:
    """The roles whose host a step among `steps` changed, having started."""
    return {p.step.runs_on for p in steps if p.step.changes_host and p.step.id in started}


def changed_roles(plan: Plan, results: Sequence[StepResult]) -> set[str]:
    """The roles ("" is the instance itself) whose host a started step has changed: they need
    their rollback steps if the run is undone."""
    return _changed(plan.steps, _started(results))


def needed_rollback(
    plan: Plan, results: Sequence[StepResult], *, automatic: bool = False
) -> tuple[PlannedStep, ...]:
    """The rollback steps that undo what the run did: those of the hosts it changed, less the
    steps that undo only steps which never started (no database to restore when the instance was
    never stopped). `automatic`: the rollback after a failure, which the strategy may keep to what
    changed since the last gate passed (in a phased upgrade, non-production stays upgraded once
    an approver has accepted its evidence at the gate)."""
    started = _started(results)
    steps = plan.steps
    if automatic and plan.rollback_scope == "since_gate":
        passed = {
            r.step_id
            for r in results
            if r.phase is Phase.UPGRADE and r.status is StepStatus.SUCCEEDED
        }
        gates = [
            i
            for i, p in enumerate(steps)
            if isinstance(p.step.action, GateAction) and p.step.id in passed
        ]
        steps = steps[gates[-1] + 1 :] if gates else steps
    changed = _changed(steps, started)
    return tuple(
        p
        for p in plan.rollback
        if p.step.runs_on in changed and (not p.step.undoes or started.intersection(p.step.undoes))
    )
