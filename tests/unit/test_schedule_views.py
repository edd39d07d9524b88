"""Scheduled runs and the digest as Block Kit and as terminal text: content, dates in the reader's
zone (Slack) or UTC (terminal), and the limits whatever the data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.approval import Tally
from bot.domain.run import RunState
from bot.engine.behind import Lag
from bot.engine.scheduling import ScheduledRun
from bot.slack.blocks import PLAN_LATEST_ACTION, parse_plan_latest_value, render, render_home
from bot.slack.blocks_schedule import plan_latest_value
from commands.views import (
    WHEN,
    ApprovalView,
    DigestView,
    HomeView,
    Notice,
    PlanView,
    ReminderView,
    RunListView,
    ScheduleListView,
    View,
    before_words,
)
from tests.factories import make_plan
from tests.unit.test_console_render import show
from tests.unit.test_slack_blocks import (
    HUGE,
    NASTY,
    check_limits,
    check_message,
    make_approval,
    make_run,
    texts,
)

STARTS = datetime(2026, 12, 6, 0, 0, tzinfo=UTC)
EPOCH = int(STARTS.timestamp())
DATE = f"<!date^{EPOCH}^{{date_short_pretty}} {{time}}|2026-12-06 00:00 UTC>"


def entry(*, approved: bool = False, window: str = "sunday-night", **run: object) -> ScheduledRun:
    state = RunState.APPROVED if approved else RunState.AWAITING_APPROVAL
    fields = {"state": state, "starts_at": STARTS, "requested_by": "U0DAVE", **run}
    tally = (
        Tally(required=1, approved_by=("U0BOB",), rejected_by=())
        if approved
        else Tally(required=2, approved_by=("U0BOB",), rejected_by=())
    )
    approvers = frozenset({"U0BOB", "U0CAROL"})  # the requester is not among them
    approval = make_approval(
        make_run(**fields), tally=tally, expires_at=STARTS, approvers=approvers
    )
    return ScheduledRun(approval=approval, window=window)


LAGS = (
    Lag(
        environment="prod",
        instance="myst-prod",
        product="myst-studio",
        title="MyST Studio",
        current="3.9.0.3",
        newest="3.10.0",
        behind=2,
    ),
    Lag(
        environment="nonprod",
        instance="myst-test",
        product="myst-studio",
        title="MyST Studio",
        problem="Could not tell which version myst-test runs.",
    ),
)


def views() -> list[View]:
    return [
        Notice(text=f"Run #3 is approved. It starts {WHEN}.", when=STARTS),
        PlanView(plan=make_plan(), requested_by="U0DAVE", run_id=3, starts_at=STARTS, window="w"),
        ApprovalView(approval=entry().approval),
        ApprovalView(approval=entry(approved=True).approval),
        ReminderView(entry=entry(), before=timedelta(hours=1)),
        ReminderView(entry=entry(approved=True), before=timedelta(minutes=10)),
        ScheduleListView(entries=(entry(), entry(approved=True, id=13, window=""))),
        ScheduleListView(entries=()),
        DigestView(lags=LAGS, checked_at=STARTS),
        RunListView(title="t", runs=(entry().run,)),
    ]


@pytest.mark.parametrize("view", views(), ids=lambda v: type(v).__name__)
def test_each_view_renders_within_limits_and_in_80_columns(view: View) -> None:
    check_message(render(view))
    assert max(len(line) for line in show(view).splitlines()) <= 80


def test_dates_are_slack_dates_in_blocks_and_utc_in_notifications_and_terminals() -> None:
    notice = Notice(text=f"Run #3 is approved. It starts {WHEN}.", when=STARTS)
    message = render(notice)
    assert DATE in texts(message.blocks)
    assert message.text == "Run #3 is approved. It starts 2026-12-06 00:00 UTC."
    assert "It starts 2026-12-06 00:00 UTC." in show(notice)


def test_the_plan_and_approval_say_when_the_run_starts() -> None:
    plan = texts(render(views()[1]).blocks)
    assert f"Scheduled: starts {DATE}*" in plan
    assert "`w`" in plan
    open_request = texts(render(ApprovalView(approval=entry().approval)).blocks)
    assert f":calendar: Starts {DATE}; approvals count until then" in open_request
    assert "Expires" not in open_request
    closed = texts(render(ApprovalView(approval=entry(approved=True).approval)).blocks)
    assert f"*Approved* by <@U0BOB>; it starts {DATE}" in closed
    terminal = show(ApprovalView(approval=entry().approval))
    assert "2026-12-06 00:00 UTC (approvals count until then)" in terminal


def test_a_reminder_says_whether_approval_is_complete_and_who_still_must_approve() -> None:
    waiting = ReminderView(entry=entry(), before=timedelta(hours=1))
    shown = texts(render(waiting).blocks)
    assert f"*Run #12 starts in 1 hour*, {DATE}" in shown
    assert "1 more approval needed from <@U0CAROL>" in shown
    assert "For: <@U0CAROL>, <@U0DAVE>" in shown  # the approvers needed, then the requester
    assert render(waiting).text == "Run #12 starts in 1 hour (not approved yet)"
    done = ReminderView(entry=entry(approved=True), before=timedelta(minutes=10))
    assert "Approval is complete by <@U0BOB>" in texts(render(done).blocks)
    assert done.mentioned == ("U0DAVE",)
    terminal = show(waiting)
    assert "Run #12 starts in 1 hour" in terminal
    assert "waiting for @U0CAROL" in terminal


def test_the_schedule_list_shows_start_window_and_approval() -> None:
    shown = texts(render(views()[6]).blocks)
    assert f"starts {DATE}" in shown
    assert "window `sunday-night`" in shown
    assert "1 of 2 approvals · waiting for <@U0CAROL>" in shown
    assert "/upgrade schedule cancel &lt;run&gt;" in shown
    assert "No run is scheduled" in texts(render(ScheduleListView(entries=())).blocks)
    assert "sunday-night" in show(views()[6])


def test_the_home_tab_has_a_scheduled_section() -> None:
    home = HomeView(user="U0BOB", active=(), awaiting=(), recent=(), scheduled=(entry(),))
    shown = texts(render_home(home)["blocks"])
    assert "*Scheduled*\n:hourglass: *#12*" in shown
    assert "Scheduled" in show(home)


def test_the_digest_has_a_button_per_instance_behind_and_lists_what_could_not_be_checked() -> None:
    message = render(DigestView(lags=LAGS, checked_at=STARTS))
    shown = texts(message.blocks)
    assert "*prod/myst-prod*: MyST Studio 3.9.0.3, 2 versions behind 3.10.0" in shown
    assert "Could not tell which version myst-test runs." in shown
    [button] = [b["accessory"] for b in message.blocks if "accessory" in b]
    assert button["action_id"] == PLAN_LATEST_ACTION
    assert button["text"]["text"] == "Plan upgrade to 3.10.0"
    assert parse_plan_latest_value(button["value"]) == (
        "myst-studio",
        "3.10.0",
        "prod",
        "myst-prod",
    )
    assert message.text == "1 instance behind the latest version"
    terminal = show(DigestView(lags=LAGS, checked_at=STARTS))
    assert "/upgrade myst-studio 3.10.0" in terminal
    assert "instance=myst-prod" in terminal


@pytest.mark.parametrize(
    "value", ["", "a b c", "a b c d e", "myst 3.9.1 prod <!here>", "myst 3.9.1;rm prod x"]
)
def test_a_digest_button_value_we_did_not_write_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="not a plan-upgrade button value"):
        parse_plan_latest_value(value)
    assert plan_latest_value("a", "1", "b", "c") == "a 1 b c"


def test_before_words() -> None:
    assert before_words(timedelta(hours=24)) == "24 hours"
    assert before_words(timedelta(hours=1, minutes=30)) == "1 hour 30 minutes"
    assert before_words(timedelta(minutes=10)) == "10 minutes"
    assert before_words(timedelta(seconds=3)) == "3 seconds"


def test_adversarial_schedules_and_digests_keep_the_limits() -> None:
    many = tuple(entry(id=i, requested_by=NASTY, window=NASTY) for i in range(300))
    nasty_lags = tuple(
        Lag(
            environment=NASTY,
            instance=NASTY,
            product=NASTY,
            title=NASTY * 20,
            current=HUGE,
            newest=NASTY,
            behind=i,
            problem=HUGE if i % 2 else "",
        )
        for i in range(300)
    )
    for view in (
        ScheduleListView(entries=many),
        ReminderView(entry=many[0], before=timedelta(days=400)),
        DigestView(lags=nasty_lags, checked_at=STARTS),
        Notice(text=NASTY * 1000 + WHEN, when=STARTS),
    ):
        message = render(view)
        check_message(message)
        assert "<!channel>" not in texts(message.blocks, kind="mrkdwn")
        assert max(len(line) for line in show(view).splitlines()) <= 80
    home = HomeView(user=NASTY, active=(), awaiting=(), recent=(), scheduled=many)
    check_limits(render_home(home)["blocks"], max_blocks=100, max_chars=30_000)
