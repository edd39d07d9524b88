"""What an operator needs to read after a run, derived from its stored step results."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bot.domain.output import Output
from bot.domain.plan import PlannedStep
from bot.domain.run import (
    Phase,
    Run,
    RunState,
    StepResult,
    StepStatus,
    VerificationResult,
    needed_rollback,
)
from bot.domain.runbook import NoLinesMatching, StepRole
from bot.engine.preview import preview

ROLLBACK_OUTCOMES = {
    RunState.SUCCEEDED: "rolled back on request and verified",
    RunState.FAILED: "the rollback failed; the instance may be between versions: needs an operator",
}
OUTCOMES = {
    RunState.SUCCEEDED: "upgraded and verified",
    RunState.FAILED: "failed; the instance was not rolled back",
    RunState.ROLLED_BACK: "failed and rolled back; the previous version is verified",
    RunState.ROLLBACK_FAILED: "failed, and the rollback failed too: needs an operator now",
    RunState.INTERRUPTED: "interrupted; the outcome of the last started step is unknown",
}


@dataclass(frozen=True, kw_only=True)
class CheckedStep:
    """A verification with the step it belongs to."""

    phase: Phase
    step_title: str
    result: VerificationResult


@dataclass(frozen=True, kw_only=True)
class RunReport:
    run: Run
    outcome: str
    backup_path: str | None
    startup_log: Output | None  # from the last phase that read one
    error_patterns: tuple[str, ...]  # what counts as an error line in that log
    verifications: tuple[CheckedStep, ...]
    steps: tuple[StepResult, ...]
    failed_step: StepResult | None
    rollback_offered: bool  # a rollback can be asked for (`/upgrade rollback <run>`)
    cannot_undo: tuple[str, ...] = ()  # steps that ran and that the rollback cannot undo
    manual_steps: tuple[str, ...] = ()  # after a failed rollback: what is left to do by hand

    @property
    def verified(self) -> bool:
        return self.run.state in (RunState.SUCCEEDED, RunState.ROLLED_BACK)


def build_report(run: Run, steps: Sequence[StepResult]) -> RunReport:
    planned = [p.step for p in (*run.plan.steps, *run.plan.rollback)]
    roles = {step.id: step.role for step in planned}
    patterns = {
        check.pattern
        for step in planned
        if step.role is StepRole.STARTUP_LOG
        for check in step.verifications
        if isinstance(check, NoLinesMatching)
    }
    backup = next(
        (
            s.captures[run.plan.backup_capture]
            for s in steps
            if run.plan.backup_capture in s.captures
        ),
        None,
    )
    logs = [
        s.result.stdout
        for s in steps
        if roles.get(s.step_id) is StepRole.STARTUP_LOG and s.result is not None
    ]
    failed = [s for s in steps if s.status is StepStatus.FAILED]
    undo = needed_rollback(run.plan, steps)
    offered = (
        run.state in (RunState.SUCCEEDED, RunState.FAILED, RunState.ROLLBACK_FAILED)
        and run.plan.rollback_of is None
        and bool(undo)
    )
    return RunReport(
        run=run,
        outcome=(ROLLBACK_OUTCOMES if run.plan.rollback_of else OUTCOMES).get(
            run.state, run.state.value.replace("_", " ")
        ),
        backup_path=backup,
        startup_log=logs[-1] if logs else None,
        error_patterns=tuple(sorted(patterns)),
        verifications=tuple(
            CheckedStep(phase=s.phase, step_title=s.title, result=v)
            for s in steps
            for v in s.verifications
        ),
        steps=tuple(steps),
        failed_step=failed[0] if failed else None,
        rollback_offered=offered,
        cannot_undo=_not_undone(run, steps)
        if run.state in (RunState.ROLLED_BACK, RunState.ROLLBACK_FAILED)
        else (),
        manual_steps=_left_to_do(run, steps, undo) if run.state is RunState.ROLLBACK_FAILED else (),
    )


def _left_to_do(
    run: Run, steps: Sequence[StepResult], undo: Sequence[PlannedStep]
) -> tuple[str, ...]:
    """The rollback steps that did not succeed, with this run's values filled in, in order."""
    done = {
        s.step_id for s in steps if s.phase is Phase.ROLLBACK and s.status is StepStatus.SUCCEEDED
    }
    captures = {k: v for s in steps for k, v in s.captures.items()}
    plan = run.plan
    return tuple(
        f"{p.step.title} (on {p.target or plan.instance_key}): "
        + preview(p.step, {**plan.values_for(p.step.runs_on), **captures})
        for p in undo
        if p.step.id not in done
    )


def _not_undone(run: Run, steps: Sequence[StepResult]) -> tuple[str, ...]:
    """Irreversible steps that ran (or stopped partway): a rollback cannot undo them."""
    ran = {s.step_id: s.status for s in steps if s.phase is Phase.UPGRADE}
    return tuple(
        p.step.title + (" (stopped partway)" if ran[p.step.id] is StepStatus.FAILED else "")
        for p in run.plan.steps
        if p.step.irreversible and ran.get(p.step.id) in (StepStatus.SUCCEEDED, StepStatus.FAILED)
    )


def error_lines(lines: Sequence[str], patterns: Sequence[str]) -> list[int]:
    """The indexes of the start-up log lines that match an error pattern. A pattern that is not
    a valid regular expression is matched as plain text (validated runbooks never give one)."""
    checks = []
    for pattern in patterns:
        try:
            checks.append(re.compile(pattern))
        except re.error:
            checks.append(re.compile(re.escape(pattern)))
    return [i for i, line in enumerate(lines) if any(c.search(line) for c in checks)]
