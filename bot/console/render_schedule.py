"""Scheduled runs and the behind-latest digest on a terminal: reminders, the schedule list, the
home tab's scheduled part and the digest. Pure functions of the views, like `render`.

Times are shown in UTC (a terminal has no reader's zone to go by); where Slack has the digest's
"Plan upgrade" buttons, the console names the command to type.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.text import Text

from bot.console.pieces import LIST_ITEMS, line, run_title, table, user, users, when
from bot.engine.scheduling import ScheduledRun
from commands.views import DigestView, ReminderView, ScheduleListView, before_words, count


def approval_words(entry: ScheduledRun) -> str:
    tally = entry.approval.tally
    if tally.approved:
        return "approved" + (f" by {users(tally.approved_by)}" if tally.approved_by else "")
    return (
        f"{len(tally.approved_by)} of {tally.required} approvals; waiting for "
        f"{users(entry.approval.waiting_for, limit=5)}"
    )


def reminder_panel(view: ReminderView) -> RenderableType:
    entry = view.entry
    window = f" (window {line(entry.window)})" if entry.window else ""
    parts: list[RenderableType] = [
        Text(f"{run_title(entry.run)}: starts {when(entry.starts_at)}{window}", style="bold"),
        Text(f"Approval: {approval_words(entry)}"),
    ]
    if not entry.approval.tally.approved:
        parts.append(Text("Unapproved at its start, it does not start.", style="bold yellow"))
    parts.append(Text(f"For: {users(view.mentioned)}", style="dim"))
    title = f"⏰ Run #{entry.run.id} starts in {before_words(view.before)}"
    return Panel(Group(*parts), title=title, title_align="left")


def scheduled_table(entries: Sequence[ScheduledRun], limit: int = LIST_ITEMS) -> RenderableType:
    rows = [
        (
            str(e.run.id),
            run_title(e.run),
            when(e.starts_at),
            line(e.window) or "—",
            approval_words(e),
            user(e.run.requested_by),
        )
        for e in entries[:limit]
    ]
    columns = ("#", "Upgrade", "Starts", "Window", "Approval", "By")
    return table(columns, rows, total=len(entries), noun="run")


def schedule_list(view: ScheduleListView) -> RenderableType:
    if not view.entries:
        return Group(
            Text("Scheduled runs", style="bold"),
            Text("No run is scheduled. Ask with /upgrade … at=<time>.", style="dim"),
        )
    return Group(
        Text("Scheduled runs", style="bold"),
        scheduled_table(view.entries),
        Text("Cancel one with: /upgrade schedule cancel <run>", style="dim"),
    )


def digest_panel(view: DigestView) -> RenderableType:
    behind = [lag for lag in view.lags if not lag.problem]
    failed = [lag for lag in view.lags if lag.problem]
    parts: list[RenderableType] = []
    if behind:
        rows = [
            (
                line(lag.key),
                f"{line(lag.current, 80)} → {line(lag.newest, 80)}",
                count(lag.behind, "version"),
                line(
                    f"/upgrade {lag.product} {lag.newest} env={lag.environment} "
                    f"instance={lag.instance}",
                    300,
                ),
            )
            for lag in behind[:LIST_ITEMS]
        ]
        columns = ("Instance", "Version", "Behind", "To plan the upgrade, type")
        parts.append(table(columns, rows, total=len(behind), noun="instance"))
    for lag in failed[:LIST_ITEMS]:
        parts.append(Text(f"Could not check {line(lag.key)}: {line(lag.problem, 300)}", "yellow"))
    parts.append(Text(f"Checked {when(view.checked_at)}.", style="dim"))
    return Panel(Group(*parts), title="Instances behind the latest version", title_align="left")
