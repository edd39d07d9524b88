"""A run's steps and its end on a terminal: a finished step with its excerpt and evidence, and
the report (outcome, steps, verifications, start-up log with error lines marked, failure tail).
Pure functions of the records, like `bot.console.render`, which uses them.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.text import Text

from bot.console.pieces import (
    EARLIER_ERRORS,
    ERROR_MARK,
    FAILED_TAIL_LINES,
    LIST_ITEMS,
    LOG_LINES,
    MAX_EXCERPT,
    PLAIN_MARK,
    PLAN_STEPS,
    clean,
    clip,
    facts,
    line,
    more,
    numbered,
    output_lines,
    run_title,
    state_text,
    table,
    user,
    versions,
)
from bot.domain.output import CommandResult, Output
from bot.domain.run import Phase, StepResult, StepStatus
from bot.engine.report import RunReport, error_lines
from commands.views import InterruptedView, StepView, count, duration

RESULT_MARKS = {
    StepStatus.STARTED: ("▶", "cyan"),
    StepStatus.SUCCEEDED: ("✔", "green"),
    StepStatus.FAILED: ("✖", "bold red"),
}


def headline(result: StepResult) -> Text:
    mark, style = RESULT_MARKS[result.status]
    phase = "Rollback step" if result.phase is Phase.ROLLBACK else "Step"
    took = f" in {duration(result.duration)}" if result.duration is not None else ""
    return Text.assemble(
        (f"{mark} ", style),
        (f"{phase} {result.number} ", "bold"),
        (line(result.step_id, 80), "bold cyan"),
        f" {result.status.value}{took}: {line(result.title)}",
    )


def output_panel(command: CommandResult | None, lines: int, title: str) -> RenderableType:
    if command is None:
        return Text("No output was recorded for this step.", style="dim")
    lines = min(lines, MAX_EXCERPT)
    shown = command.tail(lines).splitlines()[-lines:] if lines > 0 else []
    total = command.stdout.total_lines + command.stderr.total_lines
    exit_code = "none" if command.exit_code is None else str(command.exit_code)
    return Panel(
        output_lines(shown) if shown else Text("(no output)", style="dim"),
        title=f"{title} (last {len(shown)} of {count(total, 'line')})",
        title_align="left",
        subtitle=f"{line(command.host, 60)} · exit {exit_code}",
        subtitle_align="right",
        box=box.SQUARE,
    )


def evidence(result: StepResult) -> list[RenderableType]:
    parts: list[RenderableType] = []
    captures = list(result.captures.items())
    if captures:
        rows = [(line(name, 80), line(value, 1000)) for name, value in captures[:LIST_ITEMS]]
        parts += [Text("Captured", style="bold"), facts(rows)]
        if len(captures) > LIST_ITEMS:
            parts.append(more(len(captures) - LIST_ITEMS, "capture"))
    if result.verifications:
        checks = sorted(result.verifications, key=lambda v: v.passed)  # failures first
        parts.append(Text("Verified", style="bold"))
        parts += [verdict(v.passed, v.description, v.evidence) for v in checks[:LIST_ITEMS]]
        if len(checks) > LIST_ITEMS:
            parts.append(more(len(checks) - LIST_ITEMS, "verification"))
    return parts


def verdict(passed: bool, description: str, found: str) -> Text:
    return Text.assemble(
        ("PASS" if passed else "FAIL", "bold green" if passed else "bold red"),
        f" {line(description, 300)}: {line(found, 1000)}",
    )


def step_panel(view: StepView) -> RenderableType:
    result = view.result
    parts: list[RenderableType] = [headline(result)]
    if result.status is StepStatus.FAILED and result.error:
        parts.append(Text(clip(clean(result.error), 2000), style="red"))
    parts.append(output_panel(result.result, view.excerpt_lines, "Output"))
    parts += evidence(result)
    return Group(*parts)


def report_parts(report: RunReport) -> list[RenderableType]:
    run, plan = report.run, report.run.plan
    parts: list[RenderableType] = [
        facts(
            [
                ("Instance", f"{line(plan.instance_key)} ({line(plan.address)})"),
                ("Versions", versions(plan)),
                ("Strategy", line(plan.strategy)),
                ("Requested by", user(run.requested_by)),
                ("Plan", line(plan.digest, 80)),
            ]
        )
    ]
    if report.backup_path:
        parts.append(
            Text.assemble(("\nBackup: ", "bold"), (line(report.backup_path, 1000), "bold"))
        )
    elif report.steps:
        parts.append(Text("\n⚠ No backup was taken.", style="bold yellow"))
    failed = report.failed_step
    if failed is not None:
        parts += [Text("\nFailed", style="bold red"), headline(failed)]
        if failed.error:
            parts.append(Text(clip(clean(failed.error), 2000), style="red"))
        parts.append(output_panel(failed.result, FAILED_TAIL_LINES, "Output tail"))
    if report.startup_log is not None:
        parts += startup_log(report.startup_log, report.error_patterns)
    if report.verifications:
        parts.append(Text("\nVerifications", style="bold"))
        parts += [
            verdict(c.result.passed, c.result.description, c.result.evidence)
            for c in sorted(report.verifications, key=lambda c: c.result.passed)[:LIST_ITEMS]
        ]
        if len(report.verifications) > LIST_ITEMS:
            parts.append(more(len(report.verifications) - LIST_ITEMS, "verification"))
    if report.steps:
        parts += [Text("\nSteps", style="bold"), result_table(report.steps)]
    return parts


def result_table(steps: Sequence[StepResult]) -> RenderableType:
    rows = [
        (
            Text(RESULT_MARKS[step.status][0], style=RESULT_MARKS[step.status][1]),
            numbered(step.phase, step.number),
            line(step.title),
            duration(step.duration),
        )
        for step in steps[:PLAN_STEPS]
    ]
    return table(("", "#", "Step", "Took"), rows, total=len(steps), noun="step")


def startup_log(log: Output, patterns: Sequence[str]) -> list[RenderableType]:
    lines = log.text.splitlines()
    errors = error_lines(lines, patterns)
    first = max(0, len(lines) - LOG_LINES)
    marked = set(errors)
    marks = [ERROR_MARK if i in marked else PLAIN_MARK for i in range(first, len(lines))]
    note = f"{count(len(errors), 'error line')}, marked !!" if errors else "no error lines"
    shown = min(len(lines) - first, log.total_lines)
    parts: list[RenderableType] = [
        Panel(
            output_lines(lines[first:], marks=marks),
            title=f"Start-up log (last {shown} of {count(log.total_lines, 'line')}; {note})",
            title_align="left",
            box=box.SQUARE,
        )
    ]
    earlier = [i for i in errors if i < first]
    if earlier:
        picked = earlier[:EARLIER_ERRORS]
        parts.append(
            Panel(
                output_lines([lines[i] for i in picked], marks=[ERROR_MARK] * len(picked)),
                title=f"Error lines before the excerpt (first {len(picked)} of {len(earlier)})",
                title_align="left",
                box=box.SQUARE,
            )
        )
    return parts


def interrupted_text(view: InterruptedView) -> RenderableType:
    run = view.run
    choices = [f"/upgrade rollback {run.id}", f"/upgrade cancel {run.id}"]
    if view.can_resume:
        choices.insert(0, f"/upgrade resume {run.id}")
    return Text.assemble(
        ("⚠ ", "bold red"),
        (f"Run #{run.id} was interrupted: ", "bold"),
        line(view.reason, 1000),
        "\nNothing runs again until an approver decides. Check the instance, then type one of: ",
        (", ".join(choices), "bold"),
    )


def report_panel(report: RunReport, *, title: str) -> RenderableType:
    run = report.run
    outcome = Text.assemble((f"{run_title(run)}: ", "bold"), state_text(run.state))
    outcome.append(f"\n{line(report.outcome, 300)}", style="bold")
    parts: list[RenderableType] = [outcome]
    if report.manual_steps:
        parts.append(
            Text(
                "The rollback did not finish. Left to do by hand, in this order:", style="bold red"
            )
        )
        parts += [Text(f"{n}. {line(step, 300)}") for n, step in enumerate(report.manual_steps, 1)]
    if report.rollback_offered:
        parts.append(Text(f"To undo it, type: /upgrade rollback {run.id}", style="dim"))
    return Panel(Group(*parts, *report_parts(report)), title=title, title_align="left")
