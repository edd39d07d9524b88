"""The plan message in the channel and the approval request in its thread.

The Approve and Reject buttons carry `<run id>:<plan digest>`: a click counts only for the plan it
was shown with, so a click on a stale message cannot approve a changed plan.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.domain.plan import PlannedStep
from bot.domain.run import RunState
from bot.domain.runbook import GateAction
from bot.domain.templates import as_is, render_preview
from bot.slack.blocks_kit import (
    Block,
    button,
    confirm_dialog,
    context,
    divider,
    escape,
    fields,
    header,
    inline_code,
    line_sections,
    mention,
    mentions,
    passage,
    phrase,
    section,
    slack_date,
)
from commands.views import ApprovalView, PlanView, count

APPROVE_ACTION = "upgrade_approve"
REJECT_ACTION = "upgrade_reject"
APPROVE_REACTIONS = frozenset({"white_check_mark", "heavy_check_mark"})
REJECT_REACTIONS = frozenset({"x"})

PLAN_STEPS_SHOWN = 40  # beyond this a plan is unreadable in chat; the rest is counted
ROLLBACK_STEPS_SHOWN = 15


def button_value(run_id: int, digest: str) -> str:
    return f"{run_id}:{digest}"


def parse_button_value(value: str) -> tuple[int, str]:
    """`(run_id, digest)` from a button's value; ValueError for anything we did not write."""
    run, sep, digest = value.partition(":")
    if not sep or not run.isdigit() or not run.isascii() or not digest or ":" in digest:
        raise ValueError(f"not an approval button value: {value[:80]!r}")
    return int(run), digest


def versions(old: str, new: str) -> str:
    return f"{old} → {new}"


# -- the plan -----------------------------------------------------------------------------------


def plan_blocks(view: PlanView) -> list[Block]:
    plan = view.plan
    title = f"{plan.product_title} {versions(plan.from_version, plan.to_version)}"
    dry = view.run_id is None
    kind = "Dry run" if dry else "Rollback plan" if plan.rollback_of else "Upgrade plan"
    blocks: list[Block] = [header(f"{kind}: {title}")]
    if plan.downgrade:
        blocks.append(section(":warning: *This is a downgrade* to an older version."))
    facts = [
        ("Environment", phrase(plan.environment, 300)),
        ("Instance", f"{phrase(plan.instance, 300)} ({phrase(plan.address, 300)})"),
        ("Strategy", phrase(plan.strategy, 300)),
        ("Expected outage", phrase(plan.expected_outage, 300)),
        ("Backup location", inline_code(plan.backup_location) if plan.backup_location else ""),
        ("Plan digest", inline_code(plan.digest)),
        ("Requested by", mention(view.requested_by)),
    ]
    if not dry:
        facts.append(("Run", f"#{view.run_id}"))
    blocks.append(fields(facts))
    if view.starts_at is not None:
        window = f" in the window {inline_code(view.window)}" if view.window else ""
        blocks.append(
            section(
                f":calendar: *Scheduled: starts {slack_date(view.starts_at)}*{window}. "
                "Approvals are taken until then; at the start the plan is built again, and if "
                "it changed, the approvals no longer apply."
            )
        )
    for note in plan.notes:
        blocks.append(section(f":warning: {passage(escape(note))}"))
    blocks.append(divider())
    blocks += step_sections(plan.steps, title="*Steps*", shown=PLAN_STEPS_SHOWN, budget=6000)
    if plan.rollback:
        when = (
            "automatically if a step fails once the outage has started"
            if plan.auto_rollback
            else "on request, after a new approval"
        )
        blocks += step_sections(
            plan.rollback,
            title=f"*Rollback* ({when})",
            prefix="R",
            shown=ROLLBACK_STEPS_SHOWN,
            budget=2500,
        )
    else:
        blocks.append(section("*Rollback*: this strategy has no rollback steps."))
    digest = inline_code(plan.digest)
    if dry:
        note = (
            f":test_tube: Dry run: nothing was changed. Approval is bound to the plan digest "
            f"({digest}): a real request with the same inputs gives this plan."
        )
    else:
        note = (
            f":lock: Approval is bound to plan {digest}: any change means a new plan "
            "and new approvals."
        )
    blocks.append(context(note, f"Planned {slack_date(plan.created_at)}"))
    return blocks


def step_sections(
    steps: Sequence[PlannedStep], *, title: str, shown: int, budget: int, prefix: str = ""
) -> list[Block]:
    lines = []
    for planned in steps[:shown]:
        mark = "  :warning: *destructive*" if planned.step.destructive else ""
        if planned.step.irreversible:
            mark += "  :no_entry: *cannot be undone*"
        if planned.target:
            mark += f"  _on {phrase(planned.target, 100)}_"
        lines.append(
            f"*{prefix}{planned.number}.* {phrase(planned.step.title)}"
            f"{mark}\n        {inline_code(planned.preview)}"
        )
    return line_sections(lines, budget=budget, noun="step", title=title, total=len(steps))


def plan_text(view: PlanView) -> str:
    plan = view.plan
    what = "Dry run" if view.run_id is None else f"Run #{view.run_id}: upgrade plan"
    when = " (scheduled)" if view.starts_at is not None else ""
    return (
        f"{what} for {plan.product_title} {versions(plan.from_version, plan.to_version)} "
        f"on {plan.instance_key}{when}"
    )


# -- the approval request -----------------------------------------------------------------------

_CLOSED = {
    RunState.REJECTED: ":x: *Rejected*",
    RunState.EXPIRED: ":hourglass: *Expired* without a decision",
    RunState.CANCELLED: ":no_entry_sign: *Cancelled*",
    RunState.PLANNED: ":memo: *Not open for approval yet*",
}


def gate_prompt(view: ApprovalView) -> str:
    """At a gate: where the run waits and what the approver is asked to check."""
    gate = view.approval.gate
    if gate is None:
        return ""
    run = view.approval.run
    prompt = render_preview(
        gate.step.action.prompt if isinstance(gate.step.action, GateAction) else gate.step.title,
        run.plan.values_for(gate.step.runs_on),
        quote=as_is,
    )
    return (
        f"*Run #{run.id} waits at step {gate.number}* {inline_code(gate.step.id)}: "
        f"{escape(gate.step.title)}\n{escape(prompt)}"
    )


def approval_blocks(view: ApprovalView) -> list[Block]:
    run = view.approval.run
    blocks = [section(approval_status(view))]
    if view.approval.gate is not None:
        blocks.insert(0, section(passage(gate_prompt(view))))
        if view.evidence:
            lines = "\n".join(escape(line) for line in view.evidence)
            blocks.insert(1, section(passage(f"*Evidence so far*\n{lines}")))
    if view.open:
        value = button_value(run.id, view.approval.digest)
        plan = run.plan
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    button(
                        "Approve",
                        APPROVE_ACTION,
                        value,
                        style="primary",
                        confirm=confirm_dialog(
                            f"Let run #{run.id} go on?"
                            if view.approval.gate
                            else f"Approve run #{run.id}?",
                            f"{plan.product_title} {versions(plan.from_version, plan.to_version)}"
                            f" on {plan.instance_key}, plan {plan.digest}.",
                            "Approve",
                        ),
                    ),
                    button("Reject", REJECT_ACTION, value, style="danger"),
                ],
            }
        )
        blocks.append(
            context("You can also react with :white_check_mark: to approve or :x: to reject.")
        )
    else:
        blocks.append(section(closed_outcome(view)))
    return blocks


def approval_status(view: ApprovalView) -> str:
    """Who may approve, the count so far, who rejected and the expiry, as escaped mrkdwn."""
    approval = view.approval
    run, tally = approval.run, approval.tally
    lines = [
        f"*Approval for run #{run.id}* (plan {inline_code(run.plan.digest)})",
        f"Approvers: {mentions(sorted(approval.approvers))}",
        f"Approvals: *{len(tally.approved_by)} of {tally.required}* in"
        + (f" ({mentions(tally.approved_by)})" if tally.approved_by else "")
        + (f", {tally.missing} more needed" if tally.missing and view.open else ""),
    ]
    if tally.rejected_by:
        lines.append(f"Rejected by: {mentions(tally.rejected_by)}")
    if run.starts_at is not None and approval.gate is None:
        lines.append(f":calendar: Starts {slack_date(run.starts_at)}; approvals count until then")
    else:
        expiry = "Expires" if view.open else "Expiry was"
        lines.append(f"{expiry} {slack_date(approval.expires_at)}")
    return "\n".join(lines)


def closed_outcome(view: ApprovalView) -> str:
    approval = view.approval
    state = approval.run.state
    if state in _CLOSED:
        outcome = _CLOSED[state]
        if state is RunState.REJECTED and approval.tally.rejected_by:
            outcome += f" by {mentions(approval.tally.rejected_by)}"
        return outcome + "."
    # Approved, or already past approval (running or finished): the vote is over either way.
    outcome = ":white_check_mark: *Approved*"
    if approval.tally.approved_by:
        outcome += f" by {mentions(approval.tally.approved_by)}"
    if state is RunState.APPROVED and approval.run.starts_at is not None:
        outcome += f"; it starts {slack_date(approval.run.starts_at)}"
    if state is not RunState.APPROVED:
        outcome += f"; the run is now {state.value.replace('_', ' ')}"
    return outcome + "."


def approval_text(view: ApprovalView) -> str:
    run, tally = view.approval.run, view.approval.tally
    if view.open:
        return (
            f"Run #{run.id} needs {count(tally.missing, 'more approval')} ({run.plan.instance_key})"
        )
    word = {
        RunState.REJECTED: "rejected",
        RunState.EXPIRED: "approval request expired",
        RunState.CANCELLED: "cancelled",
        RunState.PLANNED: "not open for approval yet",
    }.get(run.state, "approved")
    return f"Run #{run.id}: {word}"
