"""The one rule every case is judged by: what the run must end as, computed from the runbook.

The step where the fault shows decides which hosts had been changed: those where a step that is
`destructive` or `rollback_needed` had started. The strategy's `rollback_scope` says which of them
roll back (`since_gate`: only those changed after the last gate passed; the non-production twin
approved at the gate stays upgraded). Nothing to roll back: `failed`, the hosts untouched.
Otherwise `rolled_back`, unless the fault lasts and a rollback step needs what it broke:
`rollback_failed`. A fault no step needs (the registry, for an offline upgrade) changes nothing:
`succeeded`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from bot.domain.runbook import DockerAction, GateAction, Step, StepRole
from tests.faults.matrix import (
    DOCKER_SCRIPTS,
    START_SCRIPTS,
    Case,
    Fault,
    is_console_check,
    plan_steps,
    reads,
    script_of,
    strategy_of,
)


class HostEnd(StrEnum):
    """What a host must look like when the run has ended."""

    UNTOUCHED = "untouched"  # same container, old version, same data, same image tag
    OLD = "old"  # rolled back: old version and tag, data byte-equal to before
    NEW = "new"  # upgraded and verified
    LEFT = "left"  # the rollback did not finish: the report lists what is left to do


@dataclass(frozen=True, kw_only=True)
class Expectation:
    state: str  # a RunState value
    shows_at: str | None  # the step the fault makes fail; None: no step fails
    hosts: Mapping[str, HostEnd]  # role -> end; idle roles are not listed


def _shows_at(case: Case, steps: tuple[Step, ...]) -> int | None:
    """The index of the step the fault makes fail; None when no step needs what it broke."""
    at = next(i for i, s in enumerate(steps) if s.id == case.step)
    if case.fault is Fault.WRONG_VERSION:
        return next(
            i
            for i in range(at + 1, len(steps))
            if is_console_check(steps[i]) and reads(case.scenario, steps[i]) == case.target
        )
    if case.fault is Fault.STARTUP_ERRORS:
        start = next(
            i
            for i in range(at + 1, len(steps))
            if script_of(steps[i]) in START_SCRIPTS and steps[i].runs_on == case.target
        )
        return next(
            i
            for i in range(start + 1, len(steps))
            if steps[i].role is StepRole.STARTUP_LOG and steps[i].runs_on == case.target
        )
    if case.fault is Fault.REGISTRY_DOWN:
        return next((i for i in range(at, len(steps)) if script_of(steps[i]) == "pull"), None)
    return at


def needs(fault: Fault, step: Step) -> bool:
    """Whether a (rollback) step cannot work while `fault` lasts."""
    if fault is Fault.DOCKER_DOWN:
        return isinstance(step.action, DockerAction) or script_of(step) in DOCKER_SCRIPTS
    if fault is Fault.REGISTRY_DOWN:
        return script_of(step) == "pull"
    return False


def expect(case: Case) -> Expectation:
    """The one rule every case is judged by (see the module's docstring)."""
    scenario = case.scenario
    steps, strategy = plan_steps(scenario), strategy_of(scenario)
    roles = sorted({"", *(s.runs_on for s in steps)} - set(scenario.idle))
    at = _shows_at(case, steps)
    if at is None:
        upgraded = {s.runs_on for s in steps if s.changes_host}
        ends = {r: HostEnd.NEW if r in upgraded else HostEnd.UNTOUCHED for r in roles}
        return Expectation(state="succeeded", shows_at=None, hosts=ends)
    changed = {s.runs_on for s in steps[: at + 1] if s.changes_host}
    gates = [i for i, s in enumerate(steps[:at]) if isinstance(s.action, GateAction)]
    since = gates[-1] + 1 if gates and strategy.rollback_scope == "since_gate" else 0
    scope = {s.runs_on for s in steps[since : at + 1] if s.changes_host}
    undo = changed & scope
    state = "rolled_back" if undo else "failed"
    started = {s.id for s in steps[: at + 1]}
    undo_steps = [
        s
        for s in strategy.rollback
        if s.runs_on in undo and (not s.undoes or started.intersection(s.undoes))
    ]
    if undo and case.lasting and any(needs(case.fault, s) for s in undo_steps):
        state = "rollback_failed"
    back = HostEnd.LEFT if state == "rollback_failed" else HostEnd.OLD

    def end(role: str) -> HostEnd:
        if role in undo:
            return back
        return HostEnd.NEW if role in changed else HostEnd.UNTOUCHED

    return Expectation(state=state, shows_at=steps[at].id, hosts={r: end(r) for r in roles})
