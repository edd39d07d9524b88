"""Scheduled runs and the behind-latest digest in Block Kit: reminders, the schedule list, the
App Home's scheduled section, and the digest with its "Plan upgrade" buttons.

Times are Slack dates (`<!date^…>`), so each reader sees them in their own time zone. A digest
button carries `<product> <version> <environment> <instance>`: a click asks for that upgrade as
`/upgrade` would, with the person clicking as the requester.
"""

from __future__ import annotations

import re

from bot.engine.scheduling import ScheduledRun
from bot.slack.blocks_kit import (
    Block,
    button,
    context,
    header,
    inline_code,
    line_sections,
    mentions,
    phrase,
    section,
    slack_date,
)
from bot.slack.blocks_run import run_line, run_title
from commands.views import DigestView, ReminderView, ScheduleListView, before_words, count

PLAN_LATEST_ACTION = "upgrade_plan_latest"
DIGEST_BUTTONS = 40  # a section per instance; the rest are counted, within the 50-block limit
LIST_ENTRIES = 50
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,199}")


def plan_latest_value(product: str, version: str, environment: str, instance: str) -> str:
    return " ".join((product, version, environment, instance))


def parse_plan_latest_value(value: str) -> tuple[str, str, str, str]:
    """`(product, version, environment, instance)` from a digest button; ValueError for anything
    we did not write (the words become a command, so each must be a plain name)."""
    words = value.split(" ")
    if len(words) != 4 or not all(_NAME.fullmatch(w) for w in words):
        raise ValueError(f"not a plan-upgrade button value: {value[:80]!r}")
    product, version, environment, instance = words
    return product, version, environment, instance


def approval_state(entry: ScheduledRun) -> str:
    """Whether approval is complete and, if not, who still has to approve, as escaped mrkdwn."""
    tally = entry.approval.tally
    if tally.approved:
        done = f" by {mentions(tally.approved_by)}" if tally.approved_by else ""
        return f":white_check_mark: Approval is complete{done}."
    return (
        f":hourglass: *Not approved yet*: {len(tally.approved_by)} of {tally.required}; "
        f"{count(tally.missing, 'more approval')} needed from "
        f"{mentions(entry.approval.waiting_for, limit=10)}. "
        "Unapproved at its start, it does not start."
    )


def reminder_blocks(view: ReminderView) -> list[Block]:
    entry = view.entry
    run = entry.run
    window = f" (window {inline_code(entry.window)})" if entry.window else ""
    return [
        section(
            f":alarm_clock: *Run #{run.id} starts in {before_words(view.before)}*, "
            f"{slack_date(entry.starts_at)}{window}: {phrase(run_title(run))}"
        ),
        section(approval_state(entry)),
        context(f"For: {mentions(view.mentioned)}"),
    ]


def reminder_text(view: ReminderView) -> str:
    run = view.entry.run
    state = "approved" if view.entry.approval.tally.approved else "not approved yet"
    return f"Run #{run.id} starts in {before_words(view.before)} ({state})"


def entry_line(entry: ScheduledRun) -> str:
    tally = entry.approval.tally
    window = f" · window {inline_code(entry.window)}" if entry.window else ""
    approval = (
        "approved"
        if tally.approved
        else f"{len(tally.approved_by)} of {tally.required} approvals · waiting for "
        f"{mentions(entry.approval.waiting_for, limit=5)}"
    )
    return f"{run_line(entry.run)}{window}\n        {approval}"


def schedule_list_blocks(view: ScheduleListView) -> list[Block]:
    title = "*Scheduled runs*"
    if not view.entries:
        return [section(f"{title}\nNo run is scheduled. Ask with `/upgrade … at=&lt;time&gt;`.")]
    lines = [entry_line(e) for e in view.entries[:LIST_ENTRIES]]
    blocks = line_sections(lines, budget=9000, noun="run", title=title, total=len(view.entries))
    blocks.append(context("Cancel one with `/upgrade schedule cancel &lt;run&gt;`."))
    return blocks


def schedule_list_text(view: ScheduleListView) -> str:
    return f"Scheduled runs: {count(len(view.entries), 'run')}"


def scheduled_home(entries: tuple[ScheduledRun, ...], shown: int) -> list[Block]:
    if not entries:
        return [section("*Scheduled*\n_None._")]
    lines = [entry_line(e) for e in entries[:shown]]
    return line_sections(lines, budget=8000, noun="run", title="*Scheduled*", total=len(entries))


def digest_blocks(view: DigestView) -> list[Block]:
    behind = [lag for lag in view.lags if not lag.problem]
    failed = [lag for lag in view.lags if lag.problem]
    blocks: list[Block] = [header("Instances behind the latest version")]
    for lag in behind[:DIGEST_BUTTONS]:
        block = section(
            f"*{phrase(lag.key)}*: {phrase(lag.title)} {phrase(lag.current)}, "
            f"{count(lag.behind, 'version')} behind {phrase(lag.newest)}"
        )
        value = plan_latest_value(lag.product, lag.newest, lag.environment, lag.instance)
        block["accessory"] = button(f"Plan upgrade to {lag.newest}", PLAN_LATEST_ACTION, value)
        blocks.append(block)
    if len(behind) > DIGEST_BUTTONS:
        blocks.append(context(f"_… {count(len(behind) - DIGEST_BUTTONS, 'more instance')}_"))
    if failed:
        lines = [f"• *{phrase(lag.key)}*: {phrase(lag.problem, 300)}" for lag in failed]
        blocks += line_sections(
            lines, budget=2500, noun="instance", title="*Could not be checked*", total=len(failed)
        )
    blocks.append(
        context(
            f"Checked {slack_date(view.checked_at)}. A button posts the plan here, as `/upgrade` "
            "would, with you as the requester; it still needs its approvals."
        )
    )
    return blocks


def digest_text(view: DigestView) -> str:
    behind = sum(1 for lag in view.lags if not lag.problem)
    return f"{count(behind, 'instance')} behind the latest version"
