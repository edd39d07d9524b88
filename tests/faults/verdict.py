"""Judge how a run ended against the expectation: every broken promise, with its evidence."""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from bot.engine.report import RunReport
from tests.faults.matrix import NEW, OLD, Case, Fault, plan_steps
from tests.faults.rule import Expectation, HostEnd
from tests.faults.states import HostState, ProxyState
from tests.hostkit.proxy import PollReport

# What the report's outcome sentence must say for each end state.
OUTCOME_WORDS = {
    "succeeded": ("upgraded",),
    "failed": ("failed", "not rolled back"),
    "rolled_back": ("rolled back", "verified"),
    "rollback_failed": ("rollback failed",),
}


def expected_reasons(case: Case) -> tuple[str, ...]:
    """What the failed step's error may say: a dropped link is `ConnectionLost` (or, cut while it
    was being made, `HostUnreachable`), a hang `StepTimeout`, a frozen console the HTTP check's
    limit (or, for a followed log, its end mark not seen in time). Other faults show in the
    script's own message: anything goes."""
    if case.fault is Fault.SSH_DROPS:
        return ("dropped while", "handshake failed") if case.how == "at-connect" else ("dropped",)
    if case.fault is Fault.TIMES_OUT:
        # a followed log whose limit is the step's timeout: its end mark did not come in time
        return ("still so after",) if case.how == "pause" else ("ran past its", "no line matched")
    return ("",)


def judge(
    case: Case,
    expected: Expectation,
    report: RunReport,
    before: Mapping[str, HostState | ProxyState],
    after: Mapping[str, HostState | ProxyState],
    poll: PollReport | None = None,
    window: tuple[float, float | None] | None = None,
) -> list[str]:
    """Every way the end differs from the expectation (the promise broken), as sentences an
    operator can check."""
    run, problems = report.run, []
    got = run.state.value
    failed = report.failed_step
    if got != expected.state:
        where = f" at `{failed.step_id}`: {failed.error}" if failed else ""
        problems.append(f"the run ended {got}{where}; expected {expected.state}")
    if failed is not None and expected.shows_at and failed.step_id != expected.shows_at:
        problems.append(
            f"`{failed.step_id}` failed first; the fault should show at `{expected.shows_at}`"
        )
    words = OUTCOME_WORDS.get(got, ())
    if not all(w in report.outcome for w in words):
        problems.append(f"the report's outcome for {got} reads {report.outcome!r}")
    if got == "rollback_failed" and not report.manual_steps:
        problems.append("rollback failed, but the report lists nothing left to do by hand")
    for role, end in expected.hosts.items():
        now, then = after[role], before[role]
        if isinstance(now, ProxyState):
            problems += _proxy(end, now)
        else:
            assert isinstance(then, HostState)
            problems += _host(case.scenario.role_name(role), end, then, now)
    if poll is not None:
        problems += _poller(case, poll, window)
    return problems


def remarks(case: Case, report: RunReport) -> list[str]:
    """What the report says wrongly, though the run ended as promised: why the step failed."""
    failed, reasons = report.failed_step, expected_reasons(case)
    if failed is None or failed.step_id != case.step or any(r in failed.error for r in reasons):
        return []
    return [f"the step {case.fault}, but the report gives as the reason: {failed.error}"]


def _host(name: str, end: HostEnd, then: HostState, now: HostState) -> list[str]:
    if end is HostEnd.LEFT:
        return []
    want = NEW if end is HostEnd.NEW else OLD
    problems = []
    if now.running != want:
        problems.append(f"{name} runs {now.running} ({now.brief()}); expected {want}")
    if now.console != want:
        problems.append(f"{name}'s console shows {now.console}; expected {want}")
    if end is HostEnd.NEW:
        return problems
    if now.tag != OLD:
        problems.append(
            f"{name}'s local image (what start.sh runs next) is {now.tag}, was {then.tag}: "
            f"the next start brings up {now.tag} unannounced"
        )
    if now.database != then.database:
        problems.append(
            f"{name}'s database differs from before: {_diff(then.database, now.database)}"
        )
    if end is HostEnd.UNTOUCHED and now.container != then.container:
        problems.append(
            f"{name} was restarted (container {str(then.container)[:12]} -> "
            f"{str(now.container)[:12]}) though nothing was to change it"
        )
    return problems


def _proxy(end: HostEnd, now: ProxyState) -> list[str]:
    if end is HostEnd.LEFT:
        return []
    color, version = ("green", NEW) if end is HostEnd.NEW else ("blue", OLD)
    if (now.active, now.served) == (color, version):
        return []
    return [f"the proxy: {now.brief()}; expected traffic on {color} serving {version}"]


def _poller(case: Case, poll: PollReport, window: tuple[float, float | None] | None) -> list[str]:
    """No failed request, except while a fault freezes the instance that serves the traffic."""
    step = next(s for s in plan_steps(case.scenario) if s.id == case.step)
    freezes_live = case.how == "pause" and step.runs_on in case.scenario.served_by
    allowed = []
    if freezes_live and window is not None:
        start, end = window[0], (window[1] or poll.duration) + 0.5
        allowed = [s for s in poll.failures if s.at + s.elapsed >= start and s.at <= end]
    unexpected = [s for s in poll.failures if s not in allowed]
    if not unexpected:
        return []
    first = unexpected[0]
    return [
        f"{len(unexpected)} of {poll.requests} requests through the proxy failed outside the "
        f"fault; the first at {first.at:.2f}s: {first.error}"
    ]


def _diff(old: str | None, new: str | None) -> str:
    if old is None or new is None:
        return f"{'missing' if new is None else 'present'} now"
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
    changed = [x for x in lines if x[:1] in "+-" and x[:3] not in ("+++", "---")]
    return " | ".join(changed[:6]) or "(whitespace only)"
