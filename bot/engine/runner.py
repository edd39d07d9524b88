"""The runner: executes an approved plan step by step, committing each result before the next.

Before a step runs, the store records it as started; after, as succeeded or failed with its output,
captures and verifications. So after a crash the bot knows which step may have run, and never runs
it again without someone deciding so. A destructive step is refused unless this run captured a
backup. When a step fails after the first destructive one started and the runbook says so, the
rollback steps run, and the run ends `rolled_back` or, loudly, `rollback_failed`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Protocol

from bot.domain.inventory import Inventory
from bot.domain.output import Stream
from bot.domain.plan import PlannedStep
from bot.domain.ports import RunStore
from bot.domain.run import Phase, Run, RunState, StepResult, StepStatus
from bot.engine.session import InstanceSession, Ports
from bot.engine.steps import StepExecutor, StepOutcome

log = logging.getLogger(__name__)


class RunObserver(Protocol):
    """Told about progress as it happens (the chat surfaces post it). Must not raise."""

    def state_changed(self, run: Run, reason: str) -> None: ...

    def step_started(self, run: Run, phase: Phase, planned: PlannedStep) -> None: ...

    def step_finished(self, run: Run, result: StepResult) -> None: ...

    def output_line(self, run: Run, planned: PlannedStep, line: str) -> None: ...

    def finished(self, run: Run) -> None:
        """The run has ended for now (succeeded, failed, rolled back, ...): the last call."""
        ...


class SilentObserver:
    def state_changed(self, run: Run, reason: str) -> None:
        pass

    def step_started(self, run: Run, phase: Phase, planned: PlannedStep) -> None:
        pass

    def step_finished(self, run: Run, result: StepResult) -> None:
        pass

    def output_line(self, run: Run, planned: PlannedStep, line: str) -> None:
        pass

    def finished(self, run: Run) -> None:
        pass


@dataclass(frozen=True)
class _Failure:
    step_id: str
    reason: str
    changed_instance: bool  # a destructive step had started: the instance may differ from before


class Runner:
    """Runs approved runs. One call of `execute` owns its run until it returns."""

    def __init__(
        self,
        store: RunStore,
        inventory: Inventory,
        ports: Ports,
        observer: RunObserver | None = None,
    ) -> None:
        self._store = store
        self._inventory = inventory
        self._ports = ports
        self._executor = StepExecutor(ports)
        self._observer: RunObserver = observer or SilentObserver()

    def execute(self, run_id: int, *, actor: str) -> Run:
        """Run an approved run to its end state. Raises `InstanceBusy` if it cannot start."""
        run = self._run_to_end(run_id, actor)
        self._observer.finished(run)
        return run

    def _run_to_end(self, run_id: int, actor: str) -> Run:
        run = self._store.get(run_id)
        plan = run.plan
        instance = self._inventory.find(plan.product, plan.environment, plan.instance)
        run = self._move(run, RunState.RUNNING, actor, "started")
        values = dict(plan.variables)
        with InstanceSession(instance, self._ports) as session:
            failure = self._run_steps(run, Phase.UPGRADE, plan.steps, values, session)
            if failure is None:
                return self._move(run, RunState.SUCCEEDED, actor, "every step and check passed")
            run = self._move(run, RunState.FAILED, actor, failure.reason)
            if not (plan.auto_rollback and plan.rollback and failure.changed_instance):
                return run
            run = self._move(run, RunState.ROLLING_BACK, actor, "rolling back automatically")
            undo = self._run_steps(run, Phase.ROLLBACK, plan.rollback, values, session)
            if undo is None:
                return self._move(run, RunState.ROLLED_BACK, actor, "back on the previous version")
            return self._move(run, RunState.ROLLBACK_FAILED, actor, undo.reason)

    def _run_steps(
        self,
        run: Run,
        phase: Phase,
        steps: tuple[PlannedStep, ...],
        values: dict[str, str],
        session: InstanceSession,
    ) -> _Failure | None:
        changed = phase is Phase.ROLLBACK
        backup_name = run.plan.backup_capture
        for planned in steps:
            step = planned.step
            started = StepResult(
                run_id=run.id,
                phase=phase,
                number=planned.number,
                step_id=step.id,
                title=step.title,
                status=StepStatus.STARTED,
                started_at=self._ports.clock.now(),
            )
            if phase is Phase.UPGRADE and step.destructive and not values.get(backup_name):
                reason = (
                    f"Refused to run `{step.id}`: it is destructive and this run has "
                    f"captured no backup (`{backup_name}`)."
                )
                self._finish(run, started, StepOutcome(result=None, error=reason))
                return _Failure(step.id, reason, changed)
            self._store.record_step(started)
            self._observer.step_started(run, phase, planned)
            changed = changed or step.destructive
            outcome = self._execute(run, planned, values, session)
            values.update(outcome.captures)
            self._finish(run, started, outcome)
            if not outcome.ok:
                return _Failure(
                    step.id, f"Step {planned.number} `{step.id}` failed: {outcome.error}", changed
                )
        return None

    def _execute(
        self, run: Run, planned: PlannedStep, values: dict[str, str], session: InstanceSession
    ) -> StepOutcome:
        def forward(_stream: Stream, line: str) -> None:
            self._observer.output_line(run, planned, line)

        try:
            return self._executor.run(planned.step, values, session, on_line=forward)
        except Exception:  # a bug must not leave the run claiming to be running
            log.exception("run %s: step %s raised", run.id, planned.step.id)
            return StepOutcome(
                result=None,
                error="the bot hit an internal error during this step; its outcome on the "
                "instance is unknown (see the bot's log).",
            )

    def _finish(self, run: Run, started: StepResult, outcome: StepOutcome) -> None:
        result = replace(
            started,
            status=StepStatus.SUCCEEDED if outcome.ok else StepStatus.FAILED,
            finished_at=self._ports.clock.now(),
            result=outcome.result,
            captures=dict(outcome.captures),
            verifications=outcome.verifications,
            error=outcome.error,
        )
        self._store.record_step(result)
        self._observer.step_finished(run, result)

    def _move(self, run: Run, target: RunState, actor: str, reason: str) -> Run:
        moved = self._store.transition(
            run.id, run.state, target, at=self._ports.clock.now(), actor=actor, reason=reason
        )
        self._observer.state_changed(moved, reason)
        return moved
