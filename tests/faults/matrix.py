"""The fault matrix as data: which fault can hit which step of which strategy, and how.

Cases come from the MyST Studio runbook, step by step, so a step added to a strategy gets its cases
without a change here. A combination that cannot happen is kept with the reason, for the table.
What each case must end as is computed by one rule, in `tests.faults.rule`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from bot.domain.runbook import (
    CaptureEquals,
    CopyAction,
    GateAction,
    HttpAction,
    Runbook,
    ShellAction,
    Step,
    Strategy,
    UploadAction,
)
from bot.runbooks import BUNDLED, load_runbook

OLD, NEW = "3.9.0.3", "3.9.1"
DOCKER_SCRIPTS = frozenset(
    {"pull", "import", "stop", "start", "restart", "output-logs", "update-database", "upgrade"}
)
START_SCRIPTS = frozenset({"start", "restart", "update-database", "upgrade"})
_VENDOR = re.compile(r"^\{home\}/bin/(?P<script>[a-z-]+)\.sh\b")


class Fault(StrEnum):
    SCRIPT_FAILS = "script-fails"
    SSH_DROPS = "ssh-drops"
    TIMES_OUT = "times-out"
    DOCKER_DOWN = "docker-down"
    REGISTRY_DOWN = "registry-down"
    WRONG_VERSION = "wrong-version"
    STARTUP_ERRORS = "startup-errors"


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """A strategy with its options, and the cases beyond one per applicable combination."""

    strategy: str
    options: Mapping[str, str] = field(default_factory=dict)
    lasting: tuple[tuple[str, Fault], ...] = ()  # (step, fault): not mended for the rollback
    idle: tuple[str, ...] = ()  # roles the strategy may leave changed on failure (green)
    served_by: Mapping[str, str] = field(default_factory=dict)  # proxy role -> role it serves
    names: Mapping[str, str] = field(default_factory=lambda: {"": "the instance"})

    def role_name(self, role: str) -> str:
        """How the tables name a role's host: `production`, `green`, `the instance`."""
        return self.names.get(role, role)

    @property
    def name(self) -> str:
        extra = ",".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.strategy} ({extra})" if extra else self.strategy


@dataclass(frozen=True, kw_only=True)
class Case:
    scenario: Scenario
    step: str
    fault: Fault
    target: str  # the role whose host gets the fault
    how: str  # hold | at-start | at-connect | mid-transfer | switch | hang | pause
    script: str | None = None  # the vendor script the step runs
    lasting: bool = False
    order: int = 0  # where it comes in the matrix: plan order, then fault order

    @property
    def id(self) -> str:
        return f"{self.step}-{self.fault}" + ("-lasting" if self.lasting else "")


@dataclass(frozen=True, kw_only=True)
class NotApplicable:
    scenario: Scenario
    step: str
    fault: Fault
    reason: str
    order: int = 0


SCENARIOS = {
    "in-place": Scenario(strategy="in-place", lasting=(("start", Fault.DOCKER_DOWN),)),
    "phased": Scenario(
        strategy="phased",
        options={"prod_data": "yes"},
        lasting=(("start", Fault.DOCKER_DOWN),),
        names={"": "production", "nonprod": "non-production"},
    ),
    "zero-downtime": Scenario(
        strategy="zero-downtime",
        lasting=(("green-load-state", Fault.DOCKER_DOWN),),
        idle=("green",),
        served_by={"proxy": "green"},
        names={"": "blue", "green": "green", "proxy": "the proxy"},
    ),
    "offline": Scenario(
        strategy="offline",
        lasting=(("start", Fault.DOCKER_DOWN), ("import", Fault.REGISTRY_DOWN)),
    ),
}


RUNBOOK = BUNDLED / "myst-studio.yaml"  # only this one: the matrix needs no other product's


def strategy_of(scenario: Scenario) -> Strategy:
    return _runbook().strategy(scenario.strategy)


@functools.cache
def _runbook() -> Runbook:
    return load_runbook(RUNBOOK)


def plan_steps(scenario: Scenario) -> tuple[Step, ...]:
    """The strategy's steps as planned with the scenario's options (the runbook has only
    option conditions)."""
    on = {name for name, value in scenario.options.items() if value == "yes"}
    return tuple(
        s
        for s in strategy_of(scenario).steps
        if s.when is None
        or (
            (s.when.option is None or s.when.option in on)
            and (s.when.unless_option is None or s.when.unless_option not in on)
        )
    )


def script_of(step: Step) -> str | None:
    """The vendor script a shell step runs (`pull` for `{home}/bin/pull.sh {version}`)."""
    if not isinstance(step.action, ShellAction):
        return None
    match = _VENDOR.match(step.action.command)
    return match.group("script") if match else None


def is_console_check(step: Step) -> bool:
    return isinstance(step.action, HttpAction) and any(
        isinstance(v, CaptureEquals) for v in step.verifications
    )


def reads(scenario: Scenario, step: Step) -> str:
    """The role whose console an HTTP step reads (through a proxy: the role it serves)."""
    return scenario.served_by.get(step.runs_on, step.runs_on)


def cases(scenario: Scenario) -> Iterator[Case | NotApplicable]:
    """Every step × fault of the scenario, in plan order, then its lasting cases."""
    steps = plan_steps(scenario)
    found: list[Case | NotApplicable] = []
    for index, step in enumerate(steps):
        found += [_judge(scenario, steps, index, fault) for fault in Fault]
        for step_id, fault in scenario.lasting:
            if step_id == step.id:
                judged = _judge(scenario, steps, index, fault, lasting=True)
                assert isinstance(judged, Case), judged
                found.append(replace(judged, lasting=True))
    for order, item in enumerate(found):
        yield replace(item, order=order)


def applicable(scenario: Scenario) -> list[Case]:
    """The scenario's cases, for a test's parameters."""
    return [c for c in cases(scenario) if isinstance(c, Case)]


def _judge(
    scenario: Scenario, steps: tuple[Step, ...], index: int, fault: Fault, *, lasting: bool = False
) -> Case | NotApplicable:
    step = steps[index]
    script, action = script_of(step), step.action

    def case(how: str, target: str = step.runs_on) -> Case:
        return Case(
            scenario=scenario, step=step.id, fault=fault, target=target, how=how, script=script
        )

    def na(reason: str) -> NotApplicable:
        return NotApplicable(scenario=scenario, step=step.id, fault=fault, reason=reason)

    if isinstance(action, GateAction):
        return na("a gate runs nothing on a host: it waits for an approver")
    what = {
        "http": "an HTTP check the bot makes itself",
        "copy": "a file copy through the bot (SFTP)",
        "upload": "an upload from the bot (SFTP)",
        "shell": "a plain command, no vendor script",
    }[action.kind]
    if fault is Fault.SCRIPT_FAILS:
        return case("switch") if script else na(f"{what}: no script to fail")
    if fault is Fault.SSH_DROPS:
        if isinstance(action, HttpAction):
            return na("the bot reads the console over HTTP, not over SSH")
        if script:
            return case("hold")
        if isinstance(action, CopyAction | UploadAction):
            return case("mid-transfer")
        # sessions open on first use: a step with no SSH step before it on its host connects
        return case("at-start" if _connected(steps[:index], step.runs_on) else "at-connect")
    if fault is Fault.TIMES_OUT:
        if script:
            return case("hang")
        if isinstance(action, HttpAction):
            return case("pause", target=reads(scenario, step))
        if isinstance(action, CopyAction | UploadAction):
            return na(
                "transfers are not bounded by the step's timeout (the SFTP adapter gives up "
                "only after 120 s without progress), so no shortened timeout can fire"
            )
        return na(f"{what} (`test`, `ls`, `mkdir`): nothing on the host can make it hang")
    if fault is Fault.DOCKER_DOWN:
        if script in DOCKER_SCRIPTS:
            return case("hold")
        if isinstance(action, HttpAction):
            return na("the console is read over HTTP: a running container serves without dockerd")
        return na(f"{script}.sh does not use Docker" if script else f"{what}: no Docker involved")
    if fault is Fault.REGISTRY_DOWN:
        if script == "pull" or lasting:
            return case("hold")
        return na("only pull.sh talks to the registry")  # offline: see its lasting case
    if fault is Fault.WRONG_VERSION:
        later = [s for s in steps[index + 1 :] if is_console_check(s)]
        if not later:
            return na("no console check follows")
        target = reads(scenario, later[0])
        if is_console_check(step) and reads(scenario, step) == target:
            return na("it is itself the check of that console")
        return case("switch", target=target)
    starts = [s for s in steps[index + 1 :] if script_of(s) in START_SCRIPTS]
    if script in START_SCRIPTS:
        return na("it is itself the start: the switch would race the boot")
    if not starts:
        return na("no start of MyST Studio follows")
    return case("switch", target=starts[0].runs_on)


def _connected(earlier: tuple[Step, ...], role: str) -> bool:
    """Whether one of `earlier` has opened the run's SSH connection to `role`'s host."""
    return any(
        (s.runs_on == role and s.action.kind in ("shell", "copy", "upload"))
        or (isinstance(s.action, CopyAction) and s.action.source_role == role)
        for s in earlier
    )
