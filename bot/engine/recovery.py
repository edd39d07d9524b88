"""After a restart: runs that were mid-flight are marked interrupted, never silently re-run."""

from __future__ import annotations

from bot.domain.ports import Clock, RunStore
from bot.domain.run import Run, RunState, StepStatus

ACTOR = "bot (restart)"


def interrupt_unfinished(store: RunStore, clock: Clock) -> list[Run]:
    """Mark every running or rolling-back run `interrupted`, naming the step left in doubt."""
    interrupted = []
    for run in store.runs(states=(RunState.RUNNING, RunState.ROLLING_BACK), limit=1000):
        open_steps = [s for s in store.steps(run.id) if s.status is StepStatus.STARTED]
        if open_steps:
            step = open_steps[-1]
            reason = (
                f"The bot stopped while step {step.number} `{step.step_id}` ({step.phase}) "
                "was running; its outcome on the instance is unknown. Check the instance, "
                "then resume, roll back or cancel."
            )
        else:
            reason = "The bot stopped between two steps. Resume, roll back or cancel."
        interrupted.append(
            store.transition(
                run.id, run.state, RunState.INTERRUPTED, at=clock.now(), actor=ACTOR, reason=reason
            )
        )
    return interrupted
