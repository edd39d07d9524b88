"""The runner: executes an approved plan step by step, committing each result before the next.

Before a step runs, the store records it as started; after, as succeeded or failed with its output,
captures and verifications. A step's end is committed together with what the run writes next (the
next step's start, a gate, the run's next state), so each step costs one commit, and its start is
always on disk before its command runs. So after a crash the bot knows which step may have run,
and never runs it again without someone deciding so. A destructive step is refused unless this
run captured a backup of the host it runs on. A gate pauses the run (`waiting`) until an approver
lets it go on; `resume` continues after the gate.

When a step fails after a step that changes its host started, and the runbook says so, the
rollback steps that undo what changed run, and the run ends `rolled_back` or, loudly,
`rollback_failed`. In a phased upgrade a failure on production rolls back production and leaves
non-production, approved at the gate, upgraded.

The process executing a run holds a claim on it in the store and renews it before every step and
transition; if another process took the run over as interrupted meanwhile (this one stalled past
its claim), it stops at once. An interrupted run goes on only as a person decides: resumed from
the step left in doubt, or rolled back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from bot.domain.errors import RunTakenOver
from bot.domain.inventory import Inventory
from bot.domain.output import Stream
from bot.domain.plan import Plan, PlannedStep
from bot.domain.ports import RunStore
from bot.domain.run import (
    HELD_STATES,
    REFUSED,
    Phase,
    Run,
    RunState,
    StepResult,
    StepStatus,
    needed_rollback,
)
from bot.domain.runbook import GateAction, backup_name
from bot.engine.context import working_on
from bot.engine.session import Ports, Sessions
from bot.engine.steps import StepExecutor, StepOutcome

log = logging.getLogger(__name__)

IN_DOUBT = (
    "interrupted: the bot stopped while this step ran, so its outcome on the instance is unknown"
)


class RunObserver(Protocol):
    """Told about progress as it happens (the chat surfaces post it). Must not raise."""

    def state_changed(self, run: Run, reason: str) -> None: ...

    def step_started(self, run: Run, phase: Phase, planned: PlannedStep) -> None: ...

    def step_finished(self, run: Run, result: StepResult) -> None: ...

    def output_line(self, run: Run, planned: PlannedStep, line: str) -> None: ...

    def transfer(self, run: Run, planned: PlannedStep, done: int, total: int | None) -> None:
        """Bytes of a copy or upload sent so far."""
        ...

    def finished(self, run: Run) -> None:
        """The run has stopped: it ended, or it waits at a gate. The last call of an execution."""
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

    def transfer(self, run: Run, planned: PlannedStep, done: int, total: int | None) -> None:
        pass

    def finished(self, run: Run) -> None:
        pass


class Fanout:
    """Tells every one of its observers, in order (the thread, then the metrics, say)."""

    def __init__(self, *observers: RunObserver) -> None:
        self._observers = observers

    def state_changed(self, run: Run, reason: str) -> None:
        for observer in self._observers:
            observer.state_changed(run, reason)

    def step_started(self, run: Run, phase: Phase, planned: PlannedStep) -> None:
        for observer in self._observers:
            observer.step_started(run, phase, planned)

    def step_finished(self, run: Run, result: StepResult) -> None:
        for observer in self._observers:
            observer.step_finished(run, result)

    def output_line(self, run: Run, planned: PlannedStep, line: str) -> None:
        for observer in self._observers:
            observer.output_line(run, planned, line)

    def transfer(self, run: Run, planned: PlannedStep, done: int, total: int | None) -> None:
        for observer in self._observers:
            observer.transfer(run, planned, done, total)

    def finished(self, run: Run) -> None:
        for observer in self._observers:
            observer.finished(run)


@dataclass(frozen=True)
class _Stop:
    """Why a phase stopped before its end: a failure, or a gate."""

    step: PlannedStep
    reason: str
    gate: bool = False


class Runner:
    """Runs approved runs. One call of `execute` or `resume` owns its run until it returns."""

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
        """Run an approved run until it ends or waits at a gate. Raises `InstanceBusy` if it
        cannot start."""

        def work() -> Run:
            run = self._move(self._store.get(run_id), RunState.RUNNING, actor, "started")
            return self._continue(run, actor, start=0, captures={})

        return self._drive(run_id, work)

    def resume(self, run_id: int, *, actor: str) -> Run:
        """Go on after the gate the run waits at (the service has moved it back to running)."""

        def work() -> Run:
            run = self._store.get(run_id)
            results = self._store.steps(run_id)
            gate = next(r for r in reversed(results) if r.status is StepStatus.WAITING)
            self._store.record_step(
                replace(gate, status=StepStatus.SUCCEEDED, finished_at=self._ports.clock.now())
            )
            start = next(i for i, p in enumerate(run.plan.steps) if p.step.id == gate.step_id) + 1
            return self._continue(run, actor, start=start, captures=_captured(results))

        return self._drive(run_id, work)

    def resume_interrupted(self, run_id: int, *, actor: str) -> Run:
        """Go on with an interrupted run from its first step that did not succeed: the step
        left in doubt runs again, because a person checked the instance and decided so (the
        service has moved the run back to running)."""

        def work() -> Run:
            run = self._store.get(run_id)
            results = self._close_in_doubt(run_id)
            done = {
                r.step_id
                for r in results
                if r.phase is Phase.UPGRADE and r.status is StepStatus.SUCCEEDED
            }
            start = next(
                (i for i, p in enumerate(run.plan.steps) if p.step.id not in done),
                len(run.plan.steps),
            )
            return self._continue(run, actor, start=start, captures=_captured(results))

        return self._drive(run_id, work)

    def roll_back_interrupted(self, run_id: int, *, actor: str) -> Run:
        """Undo an interrupted run, as a person decided (the service has moved it to rolling
        back): the rollback steps its started steps need, less those an earlier rollback of it
        finished before the interruption."""

        def work() -> Run:
            run = self._store.get(run_id)
            results = self._close_in_doubt(run_id)
            undone = {
                r.step_id
                for r in results
                if r.phase is Phase.ROLLBACK and r.status is StepStatus.SUCCEEDED
            }
            steps = tuple(
                p
                for p in needed_rollback(run.plan, results, automatic=True)
                if p.step.id not in undone
            )
            captures = {k: v for r in results for k, v in r.captures.items()}
            with self._sessions(run.plan) as sessions:
                return self._undo(run, actor, steps, captures, sessions)

        return self._drive(run_id, work)

    def fail_at_gate(self, run_id: int, *, actor: str, reason: str) -> Run:
        """A gate was rejected: the run fails there, and the hosts that changed roll back."""

        def work() -> Run:
            run = self._store.get(run_id)
            results = self._store.steps(run_id)
            gate = next(r for r in reversed(results) if r.status is StepStatus.WAITING)
            now = self._ports.clock.now()
            self._store.record_step(
                replace(gate, status=StepStatus.FAILED, error=reason, finished_at=now)
            )
            captures = {k: v for r in results for k, v in r.captures.items()}
            run = self._move(run, RunState.FAILED, actor, reason)
            with self._sessions(run.plan) as sessions:
                return self._roll_back(run, actor, captures, sessions)

        return self._drive(run_id, work)

    def _drive(self, run_id: int, work: Callable[[], Run]) -> Run:
        """Do `work` on the run, telling the observer when it stops. If another process took
        the run over meanwhile (this one had stopped renewing its claim), stop at once: that
        process has said in the thread that the run was interrupted."""
        with working_on(run_id):
            try:
                run = work()
            except RunTakenOver as exc:
                log.warning("run %s: %s", run_id, exc)
                return self._store.get(run_id)
            self._observer.finished(run)
            return run

    def _continue(self, run: Run, actor: str, *, start: int, captures: dict[str, str]) -> Run:
        plan = run.plan
        with self._sessions(plan) as sessions:
            stop, ended = self._run_steps(
                run, Phase.UPGRADE, plan.steps[start:], captures, sessions
            )
            if stop is None:
                passed = "every step and check passed"
                return self._move(run, RunState.SUCCEEDED, actor, passed, ended=ended)
            if stop.gate:
                return self._move(run, RunState.WAITING, actor, stop.reason)
            run = self._move(run, RunState.FAILED, actor, stop.reason, ended=ended)
            return self._roll_back(run, actor, captures, sessions)

    def _close_in_doubt(self, run_id: int) -> list[StepResult]:
        """Record the steps an interruption left started as failed, outcome unknown."""
        results = self._store.steps(run_id)
        now = self._ports.clock.now()
        closed = []
        for result in results:
            if result.status is StepStatus.STARTED:
                result = replace(result, status=StepStatus.FAILED, finished_at=now, error=IN_DOUBT)
                self._store.record_step(result)
            closed.append(result)
        return closed

    def _roll_back(
        self,
        run: Run,
        actor: str,
        captures: dict[str, str],
        sessions: Sessions,
    ) -> Run:
        """Undo what the run changed (on every host, or only what changed since the last gate
        passed, as the strategy says), if the runbook rolls back automatically."""
        plan = run.plan
        steps = needed_rollback(plan, self._store.steps(run.id), automatic=True)
        if not (plan.auto_rollback and steps):
            return run
        run = self._move(run, RunState.ROLLING_BACK, actor, "rolling back automatically")
        return self._undo(run, actor, steps, captures, sessions)

    def _undo(
        self,
        run: Run,
        actor: str,
        steps: tuple[PlannedStep, ...],
        captures: dict[str, str],
        sessions: Sessions,
    ) -> Run:
        """Run the rollback `steps` of a run that is rolling back, to its end."""
        undo, ended = self._run_steps(run, Phase.ROLLBACK, steps, captures, sessions)
        if undo is None:
            back = "back on the previous version"
            return self._move(run, RunState.ROLLED_BACK, actor, back, ended=ended)
        return self._move(run, RunState.ROLLBACK_FAILED, actor, undo.reason, ended=ended)

    def _sessions(self, plan: Plan) -> Sessions:
        main = self._inventory.find(plan.product, plan.environment, plan.instance)
        roles = {role: self._inventory.by_key(key) for role, key in plan.roles.items()}
        return Sessions({"": main, **roles}, self._ports)

    def _run_steps(
        self,
        run: Run,
        phase: Phase,
        steps: tuple[PlannedStep, ...],
        captures: dict[str, str],
        sessions: Sessions,
    ) -> tuple[_Stop | None, StepResult | None]:
        """Run `steps` until one fails or waits; with why it stopped (None: it did not), the
        last step's end, which the caller writes with the run's next state."""
        now, ended = self._ports.clock.now, None
        for planned in steps:
            self._store.hold(run.id, at=now())  # or stop: taken over
            step = planned.step
            started = StepResult(
                run_id=run.id,
                phase=phase,
                number=planned.number,
                step_id=step.id,
                title=step.title,
                status=StepStatus.STARTED,
                started_at=now(),
            )
            if isinstance(step.action, GateAction):
                self._record(run, ended, replace(started, status=StepStatus.WAITING))
                self._observer.step_started(run, phase, planned)
                waiting = f"waiting at step {planned.number} `{step.id}` for an approver to go on"
                return _Stop(planned, waiting, gate=True), None
            needed = backup_name(step.runs_on, run.plan.backup_capture)
            if phase is Phase.UPGRADE and step.destructive and not captures.get(needed):
                reason = (
                    f"{REFUSED} `{step.id}`: it is destructive and this run has captured "
                    f"no backup of its host (`{needed}`)."
                )
                self._record(run, ended)
                refused = _ended(started, StepOutcome(result=None, error=reason), at=now())
                return _Stop(planned, reason), refused
            self._record(run, ended, started)
            self._observer.step_started(run, phase, planned)
            values = {**run.plan.values_for(step.runs_on), **captures}
            outcome = self._execute(run, planned, values, sessions)
            captures.update(outcome.captures)
            ended = _ended(started, outcome, at=now())
            if not outcome.ok:
                failed = f"Step {planned.number} `{step.id}` failed: {outcome.error}"
                return _Stop(planned, failed), ended
        return None, ended

    def _execute(
        self, run: Run, planned: PlannedStep, values: dict[str, str], sessions: Sessions
    ) -> StepOutcome:
        def forward(_stream: Stream, line: str) -> None:
            self._observer.output_line(run, planned, line)

        def transfer(done: int, total: int | None) -> None:
            self._observer.transfer(run, planned, done, total)

        try:
            return self._executor.run(
                planned.step, values, sessions, on_line=forward, progress=transfer
            )
        except Exception:  # a bug must not leave the run claiming to be running
            log.exception("run %s: step %s raised", run.id, planned.step.id)
            return StepOutcome(
                result=None,
                error="the bot hit an internal error during this step; its outcome on the "
                "instance is unknown (see the bot's log).",
            )

    def _record(self, run: Run, ended: StepResult | None, *results: StepResult) -> None:
        """Write the end of the step before (if not written yet) with `results`, in one commit;
        then tell the observer that step ended."""
        self._store.record_step(*([ended] if ended else []), *results)
        if ended is not None:
            self._observer.step_finished(run, ended)

    def _move(
        self,
        run: Run,
        target: RunState,
        actor: str,
        reason: str,
        *,
        ended: StepResult | None = None,
    ) -> Run:
        """Move the run to `target`, writing the end of its last step (`ended`) in the same
        commit."""
        if run.state in HELD_STATES:
            self._store.hold(run.id, at=self._ports.clock.now())  # or stop: taken over
        moved = self._store.transition(
            run.id,
            run.state,
            target,
            at=self._ports.clock.now(),
            actor=actor,
            reason=reason,
            steps=[ended] if ended else [],
        )
        if ended is not None:
            self._observer.step_finished(run, ended)
        self._observer.state_changed(moved, reason)
        return moved


def _ended(started: StepResult, outcome: StepOutcome, *, at: datetime) -> StepResult:
    """The record of a step that ended at `at`."""
    return replace(
        started,
        status=StepStatus.SUCCEEDED if outcome.ok else StepStatus.FAILED,
        finished_at=at,
        result=outcome.result,
        captures=dict(outcome.captures),
        verifications=outcome.verifications,
        error=outcome.error,
    )


def _captured(results: list[StepResult]) -> dict[str, str]:
    """The values the upgrade steps captured so far."""
    return {k: v for r in results if r.phase is Phase.UPGRADE for k, v in r.captures.items()}
