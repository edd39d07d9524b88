"""Run one case: reset the hosts, ask for the upgrade, approve it (and its gate), inject the
fault through the runner's observer, then judge and record how it ended."""

from __future__ import annotations

import time

from bot.domain.approval import Decision
from bot.domain.run import RunState, StepResult, StepStatus
from bot.engine.planning import UpgradeRequest
from bot.engine.report import build_report
from bot.engine.service import UpgradeService
from tests.faults.inject import FaultInjector
from tests.faults.matrix import NEW, Case, Fault
from tests.faults.record import CaseRecord, save, scenario_order
from tests.faults.rig import Rig
from tests.faults.rule import expect
from tests.faults.verdict import judge, remarks
from tests.hostkit.proxy import PollReport

REQUESTER, APPROVER = "U0ALICE01", "U0BOB0001"  # the approver is listed in the test policy
SHORT_TIMEOUT = 1.0  # seconds, for the step a `times-out` case makes hang


def _approve(service: UpgradeService, run_id: int) -> None:
    approval = service.approval(service.run(run_id))
    outcome = service.vote(
        run_id, user=APPROVER, decision=Decision.APPROVE, digest=approval.digest, via="fault-matrix"
    )
    assert outcome.now_approved, f"run #{run_id} was not approved: {approval.tally}"


def run_case(rig: Rig, case: Case) -> CaseRecord:
    """Run `case` on `rig`'s hosts; the record says whether the promise was kept."""
    began = time.monotonic()
    rig.reset()
    short = case.step if case.fault is Fault.TIMES_OUT else None
    rig.configure(short_step=short, seconds=SHORT_TIMEOUT)
    before = rig.states()
    reset_seconds = time.monotonic() - began
    began = time.monotonic()

    service = rig.service()
    request = UpgradeRequest(
        product="myst",
        version=NEW,
        strategy=case.scenario.strategy,
        options=dict(case.scenario.options),
    )
    run_id = service.request(request, requester=REQUESTER).run.id
    _approve(service, run_id)
    poller = rig.proxy.poller(interval=0.02) if rig.proxy is not None else None
    injector = FaultInjector(case, rig, clock=poller.now if poller else time.monotonic)
    try:
        run = service.execute(run_id, injector)
        if run.state is RunState.WAITING:  # the phased gate: approve production
            _approve(service, run_id)
            run = service.resume(run_id, injector)
    finally:
        running = rig.quiesce()
        poll = poller.stop() if poller is not None else None
        injector.mend()
    seconds = time.monotonic() - began

    steps = service.store.steps(run_id)
    report = build_report(run, steps)
    expected = expect(case)
    after = rig.states()
    problems = judge(case, expected, report, before, after, poll, injector.window)
    if not injector.injected:
        problems.insert(0, f"the fault was not injected ({injector.detail})")
    if running:
        problems.append(f"commands the run left behind still ran 5 s after it ended: {running}")
    record = CaseRecord(
        scenario=case.scenario.name,
        strategy=case.scenario.strategy,
        order=[scenario_order(case.scenario), case.order],
        step=case.step,
        fault=str(case.fault),
        lasting=case.lasting,
        target=case.scenario.role_name(case.target),
        injected=injector.injected,
        injection=injector.detail,
        expected=expected.state,
        shows_at=expected.shows_at,
        got=run.state.value,
        failed_step=report.failed_step.step_id if report.failed_step else None,
        failure=report.failed_step.error[:300] if report.failed_step else "",
        outcome=report.outcome,
        manual_steps=list(report.manual_steps),
        rollback_offered=report.rollback_offered,
        seconds=round(seconds, 2),
        reset_seconds=round(reset_seconds, 2),
        problems=problems,
        remarks=remarks(case, report),
        traffic=_traffic(poll),
        steps=[f"{s.phase}:{s.step_id}:{s.status}" for s in steps],
        failures=[_failure(s) for s in steps if s.status is StepStatus.FAILED],
    )
    save(case, record)
    print(
        f"{case.scenario.name} {case.id}: {record.got} (expected {record.expected}) "
        f"in {seconds:.1f}s, reset {reset_seconds:.1f}s"
    )
    return record


def _failure(step: StepResult) -> str:
    """A failed step on one line: its error, and its output's last line (a script's message)."""
    text = f"{step.phase} `{step.step_id}`: {step.error}"
    last = step.result.tail(1).strip() if step.result is not None else ""
    if last and not last.startswith("<"):  # a page's HTML says nothing the error does not
        text += f" Output: {last[:200]}"
    return text


def _traffic(poll: PollReport | None) -> str:
    if poll is None:
        return ""
    seen = " -> ".join(poll.versions_seen) or "nothing"
    return f"{poll.requests} requests, {len(poll.failures)} failed; served {seen}"


def explain(record: CaseRecord) -> str:
    """The assertion message of a case whose promise was broken."""
    lines = [
        f"{record.scenario} / {record.step} / {record.fault}: {record.injection}",
        *(f"  - {p}" for p in record.problems),
        *(f"  - (report) {r}" for r in record.remarks),
        f"  steps: {', '.join(record.steps)}",
    ]
    return "\n".join(lines)
