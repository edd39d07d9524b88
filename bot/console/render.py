"""The conversation's views as rich renderables, readable in an 80-column terminal.

Pure functions of the view records, like the Slack blocks: no I/O and no clock. Untrusted text
(output, titles, names) always goes in as `Text`, never as markup, and without control characters,
so a log line can neither inject markup nor move the cursor or recolour the terminal. A terminal
has no size limits, but a megabyte line or a 2,000-step plan is still cut, visibly.

Where Slack has buttons, the console names the commands to type: `approve <run>`, `reject <run>`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import assert_never

from rich import box
from rich.console import Group, JustifyMethod, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from bot.domain.output import CommandResult, Output
from bot.domain.plan import Plan, PlannedStep
from bot.domain.run import Phase, Run, RunState, StepResult, StepStatus
from bot.domain.runbook import GateAction
from bot.domain.templates import as_is, render_preview
from bot.engine.report import RunReport
from bot.engine.service import Approval
from commands.grammar import FORMS, UPGRADE_FORM
from commands.views import (
    ApprovalView,
    HelpView,
    HomeView,
    Notice,
    PlanView,
    ProgressView,
    RunDetailView,
    RunListView,
    StepState,
    StepView,
    SummaryView,
    Tone,
    View,
    transfer_bar,
)

LINE_CHARS = 500  # one output line; longer ones are cut so one line cannot bury the rest
NAME_CHARS = 200
PLAN_STEPS = 200
LIST_RUNS = 200
LIST_ITEMS = 50
LOG_LINES = 40
MAX_EXCERPT = 200  # a step's excerpt whatever was asked: more would scroll past unread
EARLIER_ERRORS = 10
FAILED_TAIL_LINES = 20
ERROR_MARK = "!! "  # prefixes a start-up log line that matches an error pattern
PLAIN_MARK = "   "
TRUNCATED = " [… truncated]"

# C0 controls but tab and newline, DEL and C1: ESC and CSI would drive the terminal.
_CONTROL = dict.fromkeys([*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F, *range(0x80, 0xA0)])
_MENTION = re.compile(r"<@([A-Za-z0-9][A-Za-z0-9._-]*)>")

TONES = {
    Tone.INFO: ("ℹ", "cyan"),
    Tone.SUCCESS: ("✔", "green"),
    Tone.WARNING: ("⚠", "yellow"),
    Tone.ERROR: ("✖", "bold red"),
}
STEP_MARKS = {
    StepState.PENDING: ("○", "dim"),
    StepState.RUNNING: ("▶", "cyan"),
    StepState.SUCCEEDED: ("✔", "green"),
    StepState.FAILED: ("✖", "bold red"),
}
RESULT_MARKS = {
    StepStatus.STARTED: ("▶", "cyan"),
    StepStatus.SUCCEEDED: ("✔", "green"),
    StepStatus.FAILED: ("✖", "bold red"),
}
_GOOD = frozenset({RunState.SUCCEEDED, RunState.APPROVED})
_BAD = frozenset({RunState.FAILED, RunState.ROLLBACK_FAILED, RunState.REJECTED})
_WARN = frozenset({RunState.ROLLED_BACK, RunState.INTERRUPTED, RunState.AWAITING_APPROVAL})


# -- text ---------------------------------------------------------------------------------------


def clean(text: str) -> str:
    return text.translate(_CONTROL)


def clip(text: str, limit: int = LINE_CHARS) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - len(TRUNCATED)] + TRUNCATED


def line(text: str, limit: int = NAME_CHARS) -> str:
    """Untrusted text on one line, cut visibly."""
    window = text[: 4 * limit]  # a megabyte of text costs no more than a line
    shown = " ".join(clean(window).split())
    if len(window) < len(text) and len(shown) <= limit:
        shown += TRUNCATED
    return clip(shown, limit)


def user(name: str) -> str:
    return "@" + line(name, 80)


def users(names: Iterable[str], limit: int = 20) -> str:
    chosen = list(names)
    if not chosen:
        return "nobody"
    shown = ", ".join(user(n) for n in chosen[:limit])
    return f"{shown} and {len(chosen) - limit} more" if len(chosen) > limit else shown


def when(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # records are written in UTC
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def more(number: int, noun: str) -> Text:
    return Text(f"… {count(number, 'more ' + noun)}", style="dim italic")


def state_text(state: RunState) -> Text:
    style = "green" if state in _GOOD else "red" if state in _BAD else ""
    style = style or ("yellow" if state in _WARN else "cyan")
    return Text(state.value.replace("_", " "), style=style)


def versions(plan: Plan) -> str:
    return f"{line(plan.from_version, 80)} → {line(plan.to_version, 80)}"


def run_title(run: Run) -> str:
    plan = run.plan
    return f"{line(plan.product_title)} {versions(plan)} on {line(plan.instance_key)}"


def facts(rows: Sequence[tuple[str, str | Text]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for label, value in rows:
        grid.add_row(label, value)
    return grid


_NARROW = frozenset({"", "#", "Took", "Updated"})  # columns that never wrap
_RIGHT = frozenset({"#", "Took"})


def table(
    columns: Sequence[str], rows: Iterable[Sequence[RenderableType]], *, total: int, noun: str
) -> RenderableType:
    """A table of `rows`; when `total` is more than the rows, a line says how many are left."""
    grid = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name in columns:
        justify: JustifyMethod = "right" if name in _RIGHT else "left"
        grid.add_column(name, justify=justify, no_wrap=name in _NARROW, overflow="fold")
    for row in rows:
        grid.add_row(*row)
    return grid if total <= grid.row_count else Group(grid, more(total - grid.row_count, noun))


def numbered(phase: Phase, number: int) -> str:
    return f"R{number}" if phase is Phase.ROLLBACK else str(number)


def output_lines(lines: Sequence[str], *, marks: Sequence[str] | None = None) -> Text:
    """Output lines as they were printed (cleaned, each cut), optionally with a margin mark."""
    text = Text(no_wrap=False, overflow="fold")
    for i, raw in enumerate(lines):
        mark = marks[i] if marks else ""
        shown = clip(clean(raw))
        style = "bold red" if mark == ERROR_MARK else ""
        text.append(f"{mark}{shown}\n", style=style)
    text.rstrip()
    return text


# -- views --------------------------------------------------------------------------------------


def render(view: View) -> RenderableType:
    """The terminal rendering of `view`."""
    if isinstance(view, Notice):
        icon, style = TONES[view.tone]
        body = _MENTION.sub(r"@\1", clean(clip(view.text, 4000)))
        return Text.assemble((f"{icon} ", style), body)
    if isinstance(view, HelpView):
        return help_panel(view)
    if isinstance(view, PlanView):
        return plan_panel(view)
    if isinstance(view, ApprovalView):
        return approval_panel(view)
    if isinstance(view, ProgressView):
        return progress_panel(view)
    if isinstance(view, StepView):
        return step_panel(view)
    if isinstance(view, SummaryView):
        return report_panel(view.report, title=f"Run #{view.report.run.id}: summary")
    if isinstance(view, RunDetailView):
        return detail_panel(view)
    if isinstance(view, RunListView):
        return run_list(line(view.title), view.runs, line(view.empty, 1000))
    if isinstance(view, HomeView):
        return home_panel(view)
    assert_never(view)


def help_panel(view: HelpView) -> RenderableType:
    forms = [UPGRADE_FORM, *FORMS.values(), "/upgrade approve <run>", "/upgrade reject <run>"]
    grammar = Text("\n".join(form.removeprefix("/upgrade ") for form in forms))
    return Panel(
        Group(
            Text("Commands", style="bold"),
            grammar,
            Text("\nAdd --dry-run to see the plan without running anything."),
            Text("\nProducts", style="bold"),
            _bullets(view.products, "product"),
            Text("\nEnvironments", style="bold"),
            _bullets(view.environments, "environment"),
        ),
        title="How to use upgrade",
        title_align="left",
    )


def _bullets(names: Sequence[str], noun: str) -> Text:
    if not names:
        return Text("none configured", style="dim")
    text = Text("\n".join(f"• {line(n)}" for n in names[:LIST_ITEMS]))
    if len(names) > LIST_ITEMS:
        text.append("\n").append_text(more(len(names) - LIST_ITEMS, noun))
    return text


def plan_panel(view: PlanView) -> RenderableType:
    plan = view.plan
    dry = view.run_id is None
    rows: list[tuple[str, str | Text]] = [
        ("Environment", line(plan.environment)),
        ("Instance", f"{line(plan.instance)} ({line(plan.address)})"),
        ("Strategy", line(plan.strategy)),
        ("Expected outage", line(plan.expected_outage)),
        ("Backup location", line(plan.backup_location, 1000) or "—"),
        ("Plan digest", line(plan.digest, 80)),
        ("Requested by", user(view.requested_by)),
    ]
    if not dry:
        rows.append(("Run", f"#{view.run_id}"))
    parts: list[RenderableType] = []
    if plan.downgrade:
        parts.append(Text("⚠ This is a downgrade to an older version.", style="bold yellow"))
    parts.append(facts(rows))
    parts += [Text(f"⚠ {line(note, 500)}", style="bold yellow") for note in plan.notes]
    parts += [Text("\nSteps", style="bold"), step_table(plan.steps)]
    if plan.rollback:
        when_ = (
            "automatically if a step fails once the outage has started"
            if plan.auto_rollback
            else "on request, after a new approval"
        )
        parts += [Text(f"\nRollback ({when_})", style="bold"), step_table(plan.rollback, "R")]
    else:
        parts.append(Text("\nRollback: this strategy has no rollback steps."))
    bound = (
        f"Dry run: nothing was changed. Approval is bound to the plan digest ({plan.digest})."
        if dry
        else f"Approval is bound to plan {plan.digest}: any change means a new plan and "
        "new approvals."
    )
    parts.append(Text(f"\n{line(bound, 300)}", style="dim"))
    kind = "Dry run" if dry else "Rollback plan" if plan.rollback_of else "Upgrade plan"
    return Panel(
        Group(*parts),
        title=f"{kind}: {line(plan.product_title)} {versions(plan)}",
        title_align="left",
    )


def step_table(steps: Sequence[PlannedStep], prefix: str = "") -> RenderableType:
    rows = []
    for planned in steps[:PLAN_STEPS]:
        title = Text(line(planned.step.title))
        if planned.step.destructive:
            title.append(" ⚠ destructive", style="bold yellow")
        if planned.step.irreversible:
            title.append(" ⛔ cannot be undone", style="bold red")
        rows.append((f"{prefix}{planned.number}", title, Text(line(planned.preview, 300))))
    return table(("#", "Step", "Does"), rows, total=len(steps), noun="step")


def approval_status(approval: Approval, *, is_open: bool) -> Table:
    tally = approval.tally
    counted = f"{len(tally.approved_by)} of {tally.required}"
    if tally.approved_by:
        counted += f" ({users(tally.approved_by)})"
    if tally.missing and is_open:
        counted += f", {tally.missing} more needed"
    rows: list[tuple[str, str | Text]] = [
        ("Approvers", users(sorted(approval.approvers))),
        ("Approvals", counted),
    ]
    if tally.rejected_by:
        rows.append(("Rejected by", users(tally.rejected_by)))
    rows.append(("Expires" if is_open else "Expiry was", when(approval.expires_at)))
    return facts(rows)


def approval_panel(view: ApprovalView) -> RenderableType:
    run = view.approval.run
    gate = view.approval.gate
    parts: list[RenderableType] = []
    if gate is not None:
        prompt = gate.step.action.prompt if isinstance(gate.step.action, GateAction) else ""
        values = run.plan.values_for(gate.step.runs_on)
        parts.append(
            Text(
                f"Run #{run.id} waits at step {gate.number} ({gate.step.id}): "
                f"{line(gate.step.title)}\n{render_preview(prompt, values, quote=as_is)}",
                style="bold",
            )
        )
        parts += [Text(line(evidence)) for evidence in view.evidence]
    parts += [
        approval_status(view.approval, is_open=view.open),
        Text(f"Approval is bound to plan {line(run.plan.digest, 80)}.", style="dim"),
    ]
    if view.open:
        parts.append(
            Text.assemble(
                "\nTo vote as yourself, type ",
                (f"approve {run.id}", "bold green"),
                " or ",
                (f"reject {run.id}", "bold red"),
                ".",
            )
        )
    else:
        parts.append(Text(f"\n{closed_outcome(view.approval)}", style="bold"))
    return Panel(Group(*parts), title=f"Approval for run #{run.id}", title_align="left")


def closed_outcome(approval: Approval) -> str:
    state, tally = approval.run.state, approval.tally
    if state is RunState.REJECTED:
        return "✖ Rejected" + (f" by {users(tally.rejected_by)}." if tally.rejected_by else ".")
    if state is RunState.EXPIRED:
        return "⌛ Expired without a decision."
    if state is RunState.CANCELLED:
        return "⊘ Cancelled."
    if state is RunState.PLANNED:
        return "Not open for approval yet."
    outcome = "✔ Approved" + (f" by {users(tally.approved_by)}" if tally.approved_by else "")
    if state is not RunState.APPROVED:
        outcome += f"; the run is now {state.value.replace('_', ' ')}"
    return outcome + "."


def progress_panel(view: ProgressView) -> RenderableType:
    rows = [
        (
            Text(STEP_MARKS[step.state][0], style=STEP_MARKS[step.state][1]),
            numbered(step.phase, step.number),
            Text(line(step.title)),
            duration(step.seconds) if step.seconds is not None else "",
        )
        for step in view.steps[:PLAN_STEPS]
    ]
    steps = table(("", "#", "Step", "Took"), rows, total=len(view.steps), noun="step")
    return Panel(
        Group(
            Text.assemble(f"{run_title(view.run)}: ", state_text(view.run.state)),
            steps,
            *(
                [Text(f"{line(view.transfer.step_title)}: {transfer_bar(view.transfer)}")]
                if view.transfer
                else []
            ),
            Text(f"updated {when(view.updated_at)}", style="dim"),
        ),
        title=f"Run #{view.run.id}",
        title_align="left",
    )


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


def _compile(patterns: Sequence[str]) -> list[re.Pattern[str]]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error:
            compiled.append(re.compile(re.escape(pattern)))  # validated runbooks never get here
    return compiled


def startup_log(log: Output, patterns: Sequence[str]) -> list[RenderableType]:
    checks = _compile(patterns)
    lines = log.text.splitlines()
    errors = [i for i, text in enumerate(lines) if any(c.search(text) for c in checks)]
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


def detail_panel(view: RunDetailView) -> RenderableType:
    report = view.report
    run = report.run
    parts: list[RenderableType] = [
        Text.assemble((f"{run_title(run)}: ", "bold"), state_text(run.state)),
        Text(f"requested {when(run.created_at)} · updated {when(run.updated_at)}", style="dim"),
    ]
    if view.approval is not None:
        is_open = run.state is RunState.AWAITING_APPROVAL
        parts += [Text("\nApproval", style="bold"), approval_status(view.approval, is_open=is_open)]
    parts.append(Text(""))
    parts += report_parts(report)
    if not report.steps:  # nothing ran yet: what will run is the useful part
        parts += [Text("\nPlanned steps", style="bold"), step_table(run.plan.steps)]
    return Panel(Group(*parts), title=f"Run #{run.id}", title_align="left")


def run_list(title: str, runs: Sequence[Run], empty: str, limit: int = LIST_RUNS) -> RenderableType:
    if not runs:
        return Group(Text(title, style="bold"), Text(empty, style="dim"))
    rows = [
        (
            str(run.id),
            run_title(run),
            state_text(run.state),
            user(run.requested_by),
            when(run.updated_at),
        )
        for run in runs[:limit]
    ]
    columns = ("#", "Upgrade", "State", "By", "Updated")
    return Group(Text(title, style="bold"), table(columns, rows, total=len(runs), noun="run"))


def home_panel(view: HomeView) -> RenderableType:
    parts: list[RenderableType] = [
        run_list("Active runs", view.active, "None.", LIST_ITEMS),
        Text("Awaiting approval", style="bold"),
    ]
    for approval in view.awaiting[:LIST_ITEMS]:
        tally = approval.tally
        yours = view.user in approval.waiting_for
        parts.append(
            Text.assemble(
                f"#{approval.run.id} {run_title(approval.run)}\n",
                f"   {len(tally.approved_by)} of {tally.required} approvals · waiting for "
                f"{users(approval.waiting_for, limit=5)} · expires {when(approval.expires_at)}",
                (" · your vote is needed" if yours else "", "bold yellow"),
            )
        )
    if not view.awaiting:
        parts.append(Text("None.", style="dim"))
    elif len(view.awaiting) > LIST_ITEMS:
        parts.append(more(len(view.awaiting) - LIST_ITEMS, "run awaiting approval"))
    parts.append(run_list("Recent runs", view.recent, "None.", LIST_ITEMS))
    return Panel(Group(*parts), title=f"Upgrades for {user(view.user)}", title_align="left")
