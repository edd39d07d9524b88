"""Plain-text renderings of plans, reports and pre-flight findings (CLI and console)."""

from __future__ import annotations

from collections.abc import Sequence

from bot.domain.plan import Plan, PlannedStep
from bot.engine.preflight import Finding
from bot.engine.report import RunReport

EXCERPT_LINES = 40


def plan_text(plan: Plan) -> str:
    direction = "downgrade" if plan.downgrade else "upgrade"
    lines = [
        f"Plan {plan.digest}: {direction} {plan.product_title} on {plan.instance} "
        f"({plan.environment}) from {plan.from_version} to {plan.to_version}",
        f"  host:            {plan.address}",
        f"  strategy:        {plan.strategy}",
        f"  expected outage: {plan.expected_outage}",
    ]
    if plan.backup_location:
        lines.append(f"  backups go to:   {plan.backup_location}")
    lines.append("Steps:")
    lines += _steps(plan.steps)
    if plan.rollback:
        when = (
            "automatically if a step fails once the outage has started"
            if plan.auto_rollback
            else "on request, after approval"
        )
        lines.append(f"Rollback ({when}):")
        lines += _steps(plan.rollback, prefix="R")
    return "\n".join(lines)


def _steps(steps: Sequence[PlannedStep], prefix: str = "") -> list[str]:
    out = []
    for planned in steps:
        mark = "  [destructive]" if planned.step.destructive else ""
        number = f"{prefix}{planned.number}."
        out.append(f"  {number:>4} {planned.step.title}{mark}")
        out.append(f"        {planned.preview}")
    return out


def report_text(report: RunReport) -> str:
    run = report.run
    plan = run.plan
    lines = [
        f"Run #{run.id}: {plan.product_title} on {plan.instance} ({plan.environment}) "
        f"{plan.from_version} -> {plan.to_version}: {report.outcome}",
        f"  backup: {report.backup_path or 'none taken'}",
    ]
    for step in report.steps:
        took = f"{step.duration:.1f}s" if step.duration is not None else "unfinished"
        lines.append(
            f"  [{step.status.value:>9}] {step.phase.value} {step.number}. {step.title} ({took})"
        )
        if step.error:
            lines.append(f"              {step.error}")
    if report.verifications:
        lines.append("Verifications:")
        for checked in report.verifications:
            mark = "PASS" if checked.result.passed else "FAIL"
            lines.append(f"  {mark} {checked.result.description}: {checked.result.evidence}")
    if report.startup_log is not None:
        log = report.startup_log.text.splitlines()
        shown = log[-EXCERPT_LINES:]
        lines.append(f"Start-up log (last {len(shown)} of {report.startup_log.total_lines} lines):")
        lines += [f"  | {line}" for line in shown]
    if report.failed_step is not None and report.failed_step.result is not None:
        lines.append(f"Output tail of `{report.failed_step.step_id}`:")
        lines += [f"  | {line}" for line in report.failed_step.result.tail(20).splitlines()]
    return "\n".join(lines)


def findings_text(findings: Sequence[Finding]) -> str:
    width = max((len(f.instance) for f in findings), default=8)
    lines = [
        f"{'OK' if f.ok else 'FAIL':4} {f.instance:<{width}} {f.check:<8} {f.detail}"
        for f in findings
    ]
    failed = sum(not f.ok for f in findings)
    lines.append(f"{len(findings) - failed} passed, {failed} failed")
    return "\n".join(lines)
