"""Block Kit for every view of the conversation: pure functions of the view records.

`render(view)` gives a `Message` (notification text and blocks) for `chat.postMessage`,
`chat.update` and `chat.postEphemeral`; `render_home(view)` gives the App Home view for
`views.publish`. No I/O and no clock: every time shown comes from the records. Whatever the data,
the result stays within Slack's limits (see `blocks_kit`) and says what it left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, assert_never

from bot.engine.approvals import Approval
from bot.slack.blocks_kit import (
    FALLBACK_TEXT,
    HOME_BLOCKS,
    HOME_CHARS,
    MESSAGE_BLOCKS,
    MESSAGE_CHARS,
    Block,
    cap_blocks,
    clip,
    code_block,
    context,
    escape_keeping_mentions,
    header,
    line_sections,
    mentions,
    passage,
    phrase,
    section,
    slack_date,
)
from bot.slack.blocks_plan import (
    APPROVE_ACTION,
    APPROVE_REACTIONS,
    REJECT_ACTION,
    REJECT_REACTIONS,
    approval_blocks,
    approval_status,
    approval_text,
    parse_button_value,
    plan_blocks,
    plan_text,
    step_sections,
)
from bot.slack.blocks_report import (
    interrupted_blocks,
    interrupted_text,
    report_blocks,
    summary_blocks,
    summary_text,
)
from bot.slack.blocks_run import (
    STATE_EMOJI,
    progress_blocks,
    progress_text,
    run_line,
    run_title,
    state_words,
    step_blocks,
    step_text,
)
from bot.slack.blocks_schedule import (
    PLAN_LATEST_ACTION,
    digest_blocks,
    digest_text,
    parse_plan_latest_value,
    reminder_blocks,
    reminder_text,
    schedule_list_blocks,
    schedule_list_text,
    scheduled_home,
)
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
    StepView,
    SummaryView,
    Tone,
    View,
    count,
)

__all__ = [
    "APPROVE_ACTION",
    "APPROVE_REACTIONS",
    "PLAN_LATEST_ACTION",
    "REJECT_ACTION",
    "REJECT_REACTIONS",
    "Message",
    "parse_button_value",
    "parse_plan_latest_value",
    "render",
    "render_home",
]

TONE_EMOJI = {
    Tone.INFO: ":information_source:",
    Tone.SUCCESS: ":white_check_mark:",
    Tone.WARNING: ":warning:",
    Tone.ERROR: ":x:",
}
LIST_RUNS = 50
HOME_RUNS = 20
HELP_NAMES = 50


@dataclass(frozen=True, kw_only=True)
class Message:
    """A message as Slack takes it: `text` for notifications and old clients, and the blocks."""

    text: str
    blocks: list[dict[str, Any]]


def render(view: View) -> Message:
    """The Slack message showing `view`."""
    blocks, text = _render(view)
    return Message(
        text=phrase(text, FALLBACK_TEXT) or "Upgrade bot",
        blocks=cap_blocks(blocks, max_blocks=MESSAGE_BLOCKS, max_chars=MESSAGE_CHARS),
    )


def render_home(view: HomeView) -> dict[str, Any]:
    """The App Home tab of `view.user`, for `views.publish`."""
    blocks = cap_blocks(home_blocks(view), max_blocks=HOME_BLOCKS, max_chars=HOME_CHARS)
    return {"type": "home", "blocks": blocks}


def _render(view: View) -> tuple[list[Block], str]:
    if isinstance(view, Notice):
        return notice_blocks(view), notice_text(view)
    if isinstance(view, InterruptedView):
        return interrupted_blocks(view), interrupted_text(view)
    if isinstance(view, HelpView):
        return help_blocks(view), "How to use /upgrade"
    if isinstance(view, PlanView):
        return plan_blocks(view), plan_text(view)
    if isinstance(view, ApprovalView):
        return approval_blocks(view), approval_text(view)
    if isinstance(view, ProgressView):
        return progress_blocks(view), progress_text(view)
    if isinstance(view, StepView):
        return step_blocks(view), step_text(view)
    if isinstance(view, SummaryView):
        return summary_blocks(view.report), summary_text(view)
    if isinstance(view, RunDetailView):
        run = view.report.run
        return detail_blocks(view), f"Run #{run.id} {state_words(run.state)}: {run_title(run)}"
    if isinstance(view, RunListView):
        return list_blocks(view), f"{view.title}: {count(len(view.runs), 'run')}"
    if isinstance(view, ReminderView):
        return reminder_blocks(view), reminder_text(view)
    if isinstance(view, ScheduleListView):
        return schedule_list_blocks(view), schedule_list_text(view)
    if isinstance(view, DigestView):
        return digest_blocks(view), digest_text(view)
    if isinstance(view, HomeView):
        return home_blocks(view), "Your upgrades"
    assert_never(view)


def notice_blocks(view: Notice) -> list[Block]:
    # Notices are the bot's own sentences, which may name users as <@U…>; the rest is escaped.
    # `{when}` has nothing to escape, so it is still there to become a date each reader localises.
    text = escape_keeping_mentions(clip(view.text, 2800))
    if view.when is not None:
        text = text.replace(WHEN, slack_date(view.when))
    return [section(f"{TONE_EMOJI[view.tone]} {text}")]


def notice_text(view: Notice) -> str:
    """The notification text: plain, so a time is given in UTC."""
    if view.when is None:
        return view.text
    return view.text.replace(WHEN, f"{view.when:%Y-%m-%d %H:%M} UTC")


def help_blocks(view: HelpView) -> list[Block]:
    grammar = code_block([UPGRADE_FORM, *(f"  {form}" for form in FORMS.values())])
    blocks = [
        header("How to use /upgrade"),
        section(f"*Commands*\n{grammar.text}"),
        section(
            "Add `--dry-run` to see the plan without running anything. Approve a run with its "
            "*Approve* button or a :white_check_mark: reaction on its thread; reject with "
            "*Reject* or :x:."
        ),
        section(
            "Add `at=2026-12-05T02:00+01:00` or `at=sat 02:00` (your time zone), or "
            "`window=&lt;name&gt;`, to plan now and start later: approvals are taken ahead, "
            "reminders come before the start, and the plan is checked again at the start."
        ),
    ]
    for title, names, noun in (
        ("Products", view.products, "product"),
        ("Environments", view.environments, "environment"),
    ):
        lines = [f"• {phrase(name)}" for name in names[:HELP_NAMES]] or ["_none configured_"]
        blocks += line_sections(
            lines, budget=2000, noun=noun, title=f"*{title}*", total=max(len(names), 1)
        )
    return blocks


def detail_blocks(view: RunDetailView) -> list[Block]:
    report = view.report
    run, plan = report.run, report.run.plan
    blocks = [
        header(f"Run #{run.id}: {run_title(run)}"),
        section(
            f"{STATE_EMOJI[run.state]} *{phrase(report.outcome, 500)}*\n"
            f"Requested {slack_date(run.created_at)} · updated {slack_date(run.updated_at)}"
            + (f" · starts {slack_date(run.starts_at)}" if run.starts_at is not None else "")
        ),
    ]
    if view.approval is not None:
        blocks.append(section(approval_status(ApprovalView(approval=view.approval))))
    blocks += report_blocks(report)
    if not report.steps:  # nothing ran yet: what will run is the useful part
        blocks += step_sections(plan.steps, title="*Planned steps*", shown=25, budget=4000)
    return blocks


def list_blocks(view: RunListView) -> list[Block]:
    title = f"*{phrase(view.title)}*"
    if not view.runs:
        return [section(f"{title}\n{passage(view.empty)}")]
    lines = [run_line(run) for run in view.runs[:LIST_RUNS]]
    return line_sections(lines, budget=9000, noun="run", title=title, total=len(view.runs))


def home_blocks(view: HomeView) -> list[Block]:
    blocks = [header("Upgrades")]
    blocks += _home_list("Active runs", [run_line(r) for r in view.active[:HOME_RUNS]], view.active)
    awaiting = [_awaiting_line(a, view.user) for a in view.awaiting[:HOME_RUNS]]
    blocks += _home_list("Awaiting approval", awaiting, view.awaiting)
    blocks += scheduled_home(view.scheduled, HOME_RUNS)
    blocks += _home_list("Recent runs", [run_line(r) for r in view.recent[:HOME_RUNS]], view.recent)
    blocks.append(context("Type `/upgrade help` in a channel for the commands."))
    return blocks


def _home_list(title: str, lines: list[str], items: tuple[object, ...]) -> list[Block]:
    if not items:
        return [section(f"*{title}*\n_None._")]
    return line_sections(lines, budget=8000, noun="run", title=f"*{title}*", total=len(items))


def _awaiting_line(approval: Approval, user: str) -> str:
    tally = approval.tally
    yours = " · *your vote is needed*" if user in approval.waiting_for else ""
    return (
        f"{run_line(approval.run)}\n"
        f"        {len(tally.approved_by)} of {tally.required} approvals · waiting for "
        f"{mentions(approval.waiting_for, limit=5)} · expires {slack_date(approval.expires_at)}"
        f"{yours}"
    )
