"""What every run store refuses, and the trail a new run starts with, worded once so the memory
twin and the database answer alike."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.domain.errors import InstanceBusy, InvalidTransition, UnknownRun
from bot.domain.plan import Plan
from bot.domain.run import RunEvent, RunState


def unknown_run(run_id: int) -> UnknownRun:
    return UnknownRun(
        f"There is no run #{run_id}.", "Use `history` to see recent runs and their ids."
    )


def moved_meanwhile(run_id: int, expected: RunState, current: RunState) -> InvalidTransition:
    return InvalidTransition(
        f"Run #{run_id} is {_words(current)}, not {_words(expected)}: it was moved meanwhile.",
        f"See `status {run_id}` for what it is doing now.",
    )


def instance_busy(
    run_id: int, instance_key: str, holder_id: int | None, holder_state: str, holder_by: str
) -> InstanceBusy:
    if holder_id is None:
        # The other run let go between our refusal and our look at who held the instance.
        return InstanceBusy(
            f"Run #{run_id} cannot start: another run was active on {instance_key} at that moment. "
            "Try again."
        )
    return InstanceBusy(
        f"Run #{run_id} cannot start: {instance_key} is held by run #{holder_id} "
        f"({_words(RunState(holder_state))}, requested by {holder_by}). "
        f"Wait for it to finish, or see `status {holder_id}`."
    )


def creation_events(
    run_id: int,
    plan: Plan,
    *,
    requested_by: str,
    at: datetime,
    approved_by: str | None,
    reason: str,
) -> list[RunEvent]:
    """The trail a new run starts with: planned, and if it is created approved, the two moves
    that approval makes."""
    moves: list[tuple[RunState | None, RunState, str, str]] = [
        (None, RunState.PLANNED, requested_by, f"plan {plan.digest}")
    ]
    if approved_by is not None:
        moves += [
            (RunState.PLANNED, RunState.AWAITING_APPROVAL, approved_by, reason),
            (RunState.AWAITING_APPROVAL, RunState.APPROVED, approved_by, reason),
        ]
    return [
        RunEvent(run_id=run_id, at=at, from_state=f, to_state=t, actor=actor, reason=why)
        for f, t, actor, why in moves
    ]


def as_utc(at: datetime) -> datetime:
    """The same instant in UTC, as both stores give timestamps back. Naive ones are refused:
    their zone would be a guess."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"timestamps must be timezone-aware, got {at.isoformat()}")
    return at.astimezone(UTC)


def require_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")


def _words(state: RunState) -> str:
    return state.value.replace("_", " ")
