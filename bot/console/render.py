"""The conversation's views as rich renderables, readable in an 80-column terminal.

Pure functions of the view records, like the Slack blocks: no I/O and no clock. Untrusted text
(output, titles, names) always goes in through `bot.console.pieces`, which makes it safe. A
terminal has no size limits, but a megabyte line or a 2,000-step plan is still cut, visibly.
A run's steps and report are drawn by `bot.console.render_report`, scheduled runs and the
digest by `bot.console.render_schedule`.

Where Slack has buttons, the console names the commands to type: `approve <run>`, `reject <run>`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import assert_never

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from bot.console.pieces import (
    LIST_ITEMS,
    LIST_RUNS,
    MENTION,
    PLAN_STEPS,
    clean,
    clip,
    facts,
    line,
    more,
    numbered,
    run_title,
    state_text,
    table,
    user,
    users,
    versions,
    when,
)
from bot.console.render_report import interrupted_text, report_panel, report_parts, step_panel
from bot.console.render_schedule import digest_panel, reminder_panel, schedule_list, scheduled_table
from bot.domain.plan import PlannedStep
from bot.domain.run import Run, RunState
from bot.domain.runbook import GateAction
from bot.domain.templates import as_is, render_preview
from bot.engine.approvals import Approval
from commands.grammar import FORMS, UPGRADE_FORM
from commands.views import (
    WHEN,
    ApprovalView,
    DigestView,
    HelpView,
    HomeView,
    InterruptedView,
    Notice,
    PlanView,
    ProgressView,
    ReminderView,
    RunDetailView,
    RunListView,
    ScheduleListView,
    StepState,
    StepView,
    SummaryView,
    Tone,
    View,
    duration,
    transfer_bar,
)

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

# -- views --------------------------------------------------------------------------------------


def render(view: View) -> RenderableType:
    """The terminal rendering of `view`."""
    if isinstance(view, Notice):
        icon, style = TONES[view.tone]
        body = MENTION.sub(r"@\1", clean(clip(view.text, 4000)))
        if view.when is not None:
            body = body.replace(WHEN, when(view.when))
        return Text.assemble((f"{icon} ", style), body)
    if isinstance(view, InterruptedView):
        return interrupted_text(view)
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
    if isinstance(view, ReminderView):
        return reminder_panel(view)
    if isinstance(view, ScheduleListView):
        return schedule_list(view)
    if isinstance(view, DigestView):
        return digest_panel(view)
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
            Text("Add at=sat 02:00 (or an ISO time) or window=<name> to start it later."),
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
    if view.starts_at is not None:
        window = f" (window {line(view.window)})" if view.window else ""
        rows.append(("Starts", f"{when(view.starts_at)}{window}"))
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
    if approval.run.starts_at is not None and approval.gate is None:
        rows.append(("Starts", f"{when(approval.run.starts_at)} (approvals count until then)"))
    else:
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
    if state is RunState.APPROVED and approval.run.starts_at is not None:
        outcome += f"; it starts {when(approval.run.starts_at)}"
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
    if view.scheduled:
        parts += [Text("Scheduled", style="bold"), scheduled_table(view.scheduled)]
    else:
        parts += [Text("Scheduled", style="bold"), Text("None.", style="dim")]
    parts.append(run_list("Recent runs", view.recent, "None.", LIST_ITEMS))
    return Panel(Group(*parts), title=f"Upgrades for {user(view.user)}", title_align="left")
