"""Scheduled runs over signed Slack requests: asked for, approved ahead, reminded of, started at
their time (or not, saying why), listed, cancelled; and the behind-latest digest's button.

The bot is served over HTTP with the scheduler's in-memory twin on the world's clock: the test
moves the clock to each job's time and lets the twin call what is due, as APScheduler would.
Alice (the requester) is in Europe/Berlin in the emulated workspace; the clock starts on
Thursday 2026-01-01 00:00 UTC.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.memory.scheduler import MemoryScheduler
from bot.config import Config
from bot.domain.inventory import Policy
from bot.domain.run import RunState
from bot.domain.schedule import ScheduleSettings
from bot.runbooks import BUNDLED, load_runbooks
from bot.slack.blocks import APPROVE_ACTION, PLAN_LATEST_ACTION
from tests.hostkit.slackbot import ALICE, BOB, CAROL, CHANNEL, SlackBot, text_of, wait_for
from tests.slackemu import requests as slack
from tests.unit.memory_world import IMAGE, MemoryWorld, myst_world

DIGEST_CHANNEL = "C0DIGEST1"
SETTINGS = ScheduleSettings(
    reminders=(timedelta(hours=24), timedelta(hours=1), timedelta(minutes=10)),
    digest_channel=DIGEST_CHANNEL,
)
SATURDAY_2AM_BERLIN = datetime(2026, 1, 3, 1, 0, tzinfo=UTC)
EPOCH = int(SATURDAY_2AM_BERLIN.timestamp())


class Scheduled:
    """The bot, its world and its scheduler's twin."""

    def __init__(self, bot: SlackBot, world: MemoryWorld, scheduler: MemoryScheduler) -> None:
        self.bot = bot
        self.world = world
        self.scheduler = scheduler

    def at(self, moment: datetime) -> None:
        """Move the clock to `moment` and let the scheduler call what is due."""
        self.world.clock.advance((moment - self.world.clock.now()).total_seconds())
        self.scheduler.run_due()

    def ask(self, text: str = "myst 3.9.1 at=sat 02:00") -> tuple[str, str]:
        """Schedule an upgrade; returns (plan ts, approval request ts)."""
        count = len(self.bot.plan_messages())
        status, body = self.bot.command(text)
        assert status == 200
        assert "Planning" in body
        plan = wait_for("the plan", lambda: self.bot.plan_messages()[count:])[-1]
        replies = wait_for("the approval request", lambda: self.bot.thread(plan.ts))
        return plan.ts, replies[0].ts

    def said(self, plan_ts: str, words: str) -> list[str]:
        return [text_of(m) for m in self.bot.thread(plan_ts) if words in text_of(m)]

    def refusal(self, words: str, user: str = ALICE) -> str:
        found = wait_for(
            f"a refusal saying {words!r}",
            lambda: [t for t in self.bot.ephemeral_texts(user) if words in t],
        )
        return found[-1]

    def state(self, run_id: int = 1) -> RunState:
        return self.world.store.get(run_id).state


@pytest.fixture
def s(slack_bot_factory) -> Scheduled:  # type: ignore[no-untyped-def]
    world = myst_world(Policy(approvers=(BOB, CAROL), approvals_required=1))
    config = Config(
        inventory=world.inventory,
        catalog=load_runbooks(BUNDLED),
        source=Path("memory"),
        schedule=SETTINGS,
    )
    scheduler = MemoryScheduler(world.clock)
    bot = slack_bot_factory(config, ports=world.ports, store=world.store, scheduler=scheduler)
    bot.emulator.limiter.enabled = False
    scheduler.start(bot.bot.conversation)
    return Scheduled(bot, world, scheduler)


def test_scheduled_approved_ahead_reminded_and_started_at_its_time(s: Scheduled) -> None:
    plan_ts, approval_ts = s.ask()
    plan = text_of(s.bot.emulator.message(CHANNEL, plan_ts))
    assert f"<!date^{EPOCH}^" in plan  # shown in each reader's own time zone
    assert "Scheduled: starts" in plan
    assert s.bot.emulator.calls("users.info")  # `sat 02:00` was read in Alice's zone
    assert f"<!date^{EPOCH}^" in text_of(s.bot.emulator.message(CHANNEL, approval_ts))
    assert s.world.store.get(1).starts_at == SATURDAY_2AM_BERLIN

    s.bot.react(BOB, "white_check_mark", plan_ts)
    wait_for("the approval notice", lambda: s.said(plan_ts, "is approved. It starts"))
    assert s.state() is RunState.APPROVED
    assert s.world.shell.commands == []  # approved, and it waits

    s.at(SATURDAY_2AM_BERLIN - timedelta(hours=24))
    [reminder] = wait_for("the reminder", lambda: s.said(plan_ts, "starts in 24 hours"))
    assert "Approval is complete" in reminder
    assert f"<@{ALICE}>" in reminder  # the requester is told
    assert next(m for m in s.bot.thread(plan_ts) if "starts in 24 hours" in m.text).reply_broadcast

    s.at(SATURDAY_2AM_BERLIN)
    wait_for("the start notice", lambda: s.said(plan_ts, "starts now, as scheduled"))
    wait_for("the run to succeed", lambda: s.state() is RunState.SUCCEEDED)
    summary = wait_for(
        "the summary", lambda: [m for m in s.bot.thread(plan_ts) if "console_version" in text_of(m)]
    )
    assert summary
    s.at(SATURDAY_2AM_BERLIN + timedelta(hours=1))
    assert len(s.said(plan_ts, "starts now")) == 1  # once


def test_an_unapproved_run_is_reminded_with_who_must_approve_and_does_not_start(
    s: Scheduled,
) -> None:
    plan_ts, approval_ts = s.ask("myst 3.9.1 at=2026-01-03T02:00+01:00")
    s.at(SATURDAY_2AM_BERLIN - timedelta(minutes=10))
    [reminder] = wait_for("the reminder", lambda: s.said(plan_ts, "starts in 10 minutes"))
    assert "Not approved yet" in reminder
    for person in (BOB, CAROL, ALICE):
        assert f"<@{person}>" in reminder
    # the 24 h and 1 h reminders fell due with it: only the closest one is given
    assert len(s.said(plan_ts, "starts in")) == 1

    s.at(SATURDAY_2AM_BERLIN)
    [told] = wait_for("the reason", lambda: s.said(plan_ts, "did not start"))
    assert "not approved by its start time" in told
    assert f"<@{BOB}>" in told
    assert s.state() is RunState.EXPIRED
    assert APPROVE_ACTION not in text_of(s.bot.emulator.message(CHANNEL, approval_ts))
    assert s.world.shell.commands == []


def test_a_changed_plan_before_the_start_voids_the_approvals(s: Scheduled) -> None:
    plan_ts, _ = s.ask("myst 3.10.0 at=sat 02:00")
    s.bot.react(CAROL, "white_check_mark", plan_ts)
    wait_for("the approval", lambda: s.state() is RunState.APPROVED)
    s.world.engine.pull(f"{IMAGE}:3.9.1")  # upgraded by hand meanwhile
    s.world.engine.tag(f"{IMAGE}:3.9.1", "myst-studio")
    s.world.engine.run_container("myst-studio", "myst-studio")
    s.at(SATURDAY_2AM_BERLIN)
    [told] = wait_for("the reason", lambda: s.said(plan_ts, "did not start"))
    assert "the plan changed since it was approved" in told
    assert "now runs 3.9.1" in told
    assert "no longer apply" in told
    assert s.state() is RunState.CANCELLED


def test_schedule_list_and_cancel(s: Scheduled) -> None:
    plan_ts, _ = s.ask()
    s.bot.command("schedule list")
    listed = s.refusal("Scheduled runs")
    assert "*#1*" in listed
    assert f"<!date^{EPOCH}^" in listed
    s.bot.command("schedule cancel 1")
    wait_for("the cancel notice", lambda: s.said(plan_ts, "was cancelled by"))
    assert s.state() is RunState.CANCELLED
    assert s.scheduler.jobs() == []
    s.bot.command("schedule list")
    assert "No run is scheduled" in s.refusal("No run is scheduled")


@pytest.mark.parametrize(
    ("text", "problem", "fix"),
    [
        ("myst 3.9.1 at=2025-12-01T02:00Z", "which has passed", "Give a time still ahead"),
        ("myst 3.9.1 at=someday", "is not a time the bot can read", "Europe/Berlin"),
        ("myst 3.9.1 window=sunday-night", "has no maintenance windows", "Leave out window="),
    ],
)
def test_bad_times_and_windows_get_one_sentence_with_the_fix(
    s: Scheduled, text: str, problem: str, fix: str
) -> None:
    s.bot.command(text)
    answer = s.refusal(problem)
    assert fix in answer
    assert s.bot.plan_messages() == []


def test_a_second_schedule_for_the_instance_and_cancelling_a_started_run_are_refused(
    s: Scheduled,
) -> None:
    plan_ts, _ = s.ask()
    s.bot.command("myst 3.9.1 at=sun 03:00")
    assert "/upgrade schedule cancel 1" in s.refusal("already has run #1 scheduled")
    s.bot.react(BOB, "white_check_mark", plan_ts)
    wait_for("the approval", lambda: s.state() is RunState.APPROVED)
    s.at(SATURDAY_2AM_BERLIN)
    wait_for("the run to succeed", lambda: s.state() is RunState.SUCCEEDED)
    s.bot.command("schedule cancel 1")
    assert "/upgrade rollback 1" in s.refusal("already started")


def test_the_home_tab_lists_scheduled_runs(s: Scheduled) -> None:
    s.ask()
    s.bot.sender.send(*slack.app_home_opened(BOB, "Ev0HOMESCHED"))
    home = wait_for("the home tab", lambda: s.bot.emulator.home(BOB))
    shown = json.dumps(home)
    assert "*Scheduled*" in shown
    assert f"<!date^{EPOCH}^" in shown


def test_the_digest_lists_instances_behind_and_its_button_plans_the_newest(s: Scheduled) -> None:
    s.scheduler.repeat_behind_latest(timedelta(days=1))
    s.at(s.world.clock.now() + timedelta(days=1))
    digest = wait_for("the digest", lambda: s.bot.emulator.messages(DIGEST_CHANNEL))[-1]
    shown = text_of(digest)
    assert "prod/myst-prod" in shown
    assert "3.9.0.3" in shown
    assert "2 versions behind" in shown
    assert PLAN_LATEST_ACTION in shown
    value = "myst-studio 3.10.0 prod myst-prod"
    assert value in shown
    s.bot.click(CAROL, PLAN_LATEST_ACTION, value, digest.ts, channel=DIGEST_CHANNEL)
    plan = wait_for(
        "the plan",
        lambda: [
            m for m in s.bot.emulator.messages(DIGEST_CHANNEL) if "Upgrade plan" in text_of(m)
        ],
    )[-1]
    assert "3.9.0.3 → 3.10.0" in text_of(plan)
    assert s.world.store.get(1).requested_by == CAROL
