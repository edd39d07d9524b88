"""What the conversation says, independent of how a surface shows it.

Each view is a frozen record of domain data. `bot/slack/blocks.py` turns views into Block Kit,
`bot/console/render.py` into terminal text; both are pure functions of these records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from bot.domain.plan import Plan
from bot.domain.run import Phase, Run, RunState, StepResult
from bot.engine.approvals import Approval
from bot.engine.behind import Lag
from bot.engine.report import RunReport
from bot.engine.scheduling import ScheduledRun

WHEN = "{when}"  # in a notice's text: where its `when` goes, in each reader's own time zone


class Tone(StrEnum):
    INFO = "info"
    SUCCESS = "success"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True, kw_only=True)
class Notice:
    """One or two sentences: a reply, a refusal, or news in a thread. A `{when}` in the text
    stands for `when`, which each surface shows in the reader's time zone where it can."""

    text: str
    tone: Tone = Tone.INFO
    when: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class HelpView:
    products: tuple[str, ...]  # "myst-studio (myst)", ...
    environments: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class PlanView:
    """The plan, posted in the channel (or shown to the requester alone for a dry run)."""

    plan: Plan
    requested_by: str
    run_id: int | None = None  # None for a dry run
    starts_at: datetime | None = None  # a scheduled run: when it starts
    window: str = ""  # the maintenance window it starts in


@dataclass(frozen=True, kw_only=True)
class ApprovalView:
    """The approval request in the plan's thread; `open` shows the Approve/Reject buttons."""

    approval: Approval
    evidence: tuple[str, ...] = ()  # at a gate: what the run has shown so far, one line each

    @property
    def open(self) -> bool:
        return self.approval.run.state in (RunState.AWAITING_APPROVAL, RunState.WAITING)


class StepState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, kw_only=True)
class StepLine:
    phase: Phase
    number: int
    title: str
    state: StepState
    seconds: float | None = None


@dataclass(frozen=True, kw_only=True)
class Transfer:
    """A copy or upload under way."""

    step_title: str
    done: int
    total: int | None


@dataclass(frozen=True, kw_only=True)
class ProgressView:
    """The one progress message of a run, edited in place as steps start and end."""

    run: Run
    steps: tuple[StepLine, ...]
    updated_at: datetime
    transfer: Transfer | None = None


@dataclass(frozen=True, kw_only=True)
class StepView:
    """A finished step, replied in the thread with a bounded excerpt of its output."""

    run_id: int
    result: StepResult
    excerpt_lines: int = 15


@dataclass(frozen=True, kw_only=True)
class SummaryView:
    """The end of a run, in the channel: outcome, backup, start-up log, evidence, durations."""

    report: RunReport


@dataclass(frozen=True, kw_only=True)
class RunDetailView:
    """`/upgrade status <run>`: one run in full."""

    report: RunReport
    approval: Approval | None = None


@dataclass(frozen=True, kw_only=True)
class RunListView:
    """`/upgrade status` and `/upgrade history`: runs, one line each."""

    title: str
    runs: tuple[Run, ...]
    empty: str = "No runs."


@dataclass(frozen=True, kw_only=True)
class ReminderView:
    """A scheduled run starts soon: in its thread (and the channel), naming who still has to
    approve and the requester."""

    entry: ScheduledRun
    before: timedelta

    @property
    def mentioned(self) -> tuple[str, ...]:
        """Approvers still needed (if any are) and the requester, each once."""
        approval = self.entry.approval
        needed = approval.waiting_for if not approval.tally.approved else ()
        return tuple(dict.fromkeys((*needed, approval.run.requested_by)))


@dataclass(frozen=True, kw_only=True)
class ScheduleListView:
    """`/upgrade schedule list`: runs waiting for their start time, soonest first."""

    entries: tuple[ScheduledRun, ...]


@dataclass(frozen=True, kw_only=True)
class DigestView:
    """The periodic digest: instances behind the newest version, each with a button that asks
    for its upgrade (as `/upgrade` would, by whoever clicks)."""

    lags: tuple[Lag, ...]
    checked_at: datetime


@dataclass(frozen=True, kw_only=True)
class HomeView:
    """The App Home tab of one user."""

    user: str
    active: tuple[Run, ...]
    awaiting: tuple[Approval, ...]
    recent: tuple[Run, ...]
    scheduled: tuple[ScheduledRun, ...] = ()


@dataclass(frozen=True, kw_only=True)
class InterruptedView:
    """A run cut off when the process executing it stopped, and what an approver may do now:
    resume it from the step left in doubt (not once it was rolling back), or roll it back."""

    run: Run
    reason: str
    can_resume: bool


View = (
    Notice
    | InterruptedView
    | HelpView
    | PlanView
    | ApprovalView
    | ProgressView
    | StepView
    | SummaryView
    | RunDetailView
    | RunListView
    | ReminderView
    | ScheduleListView
    | DigestView
    | HomeView
)


def duration(seconds: float | None) -> str:
    """A step's or run's duration as people read it: `3.2 s`, `4 min 5 s`, `1 h 2 min`."""
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
    """`1 step`, `1,024 steps`."""
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def transfer_bar(transfer: Transfer, width: int = 20) -> str:
    """`[#####-----] 40% (412 of 1,024 MB)`, or the bytes so far when the total is unknown."""
    done_mb = transfer.done / 1_048_576
    if not transfer.total:
        return f"{done_mb:,.0f} MB sent"
    share = min(1.0, transfer.done / transfer.total)
    filled = round(share * width)
    total_mb = transfer.total / 1_048_576
    return (
        f"[{'#' * filled}{'-' * (width - filled)}] {share:.0%} "
        f"({done_mb:,.0f} of {total_mb:,.0f} MB)"
    )


def before_words(before: timedelta) -> str:
    """`24 hours`, `1 hour`, `10 minutes`, `1 hour 30 minutes`; under a minute, `30 seconds`."""

    def count(number: int, noun: str) -> str:
        return f"{number} {noun}{'' if number == 1 else 's'}"

    if before < timedelta(minutes=1):
        return count(round(before.total_seconds()), "second")
    hours, minutes = divmod(round(before.total_seconds() / 60), 60)
    parts = [count(hours, "hour")] if hours else []
    if minutes or not parts:
        parts.append(count(minutes, "minute"))
    return " ".join(parts)
