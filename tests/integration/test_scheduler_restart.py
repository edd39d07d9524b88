"""Scheduled runs across process deaths: `python -m bot serve` as real processes on SQLite and
PostgreSQL, killed (SIGKILL) between scheduling and the start time.

The start is set a few seconds ahead; the bot's lease is two seconds long, so a new process takes
over soon after the old one died without giving it up. The run must start exactly once (its
audit trail has one move to `running`), or, with `missed_start: report`, be reported as missed
and not run. Two processes serving at once: one schedules, and the run still starts once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from adapters.sql_store import SqlRunStore, upgrade_schema
from bot.domain.run import Run, RunState
from bot.sandbox import create_sandbox
from tests.hostkit.botprocess import Served, serve, wait_healthy
from tests.hostkit.slackbot import CHANNEL, text_of, wait_for
from tests.slackemu import requests as slack
from tests.slackemu.server import SlackEmulator
from tests.slackemu.workspace import Message

LEAD = 7.0  # seconds from asking to the start: planning and approving fit well within it


class Deployment:
    """A sandbox, its database and config, and the bot processes started on them."""

    def __init__(self, slack_api: SlackEmulator, folder: Path, url: str, missed: str) -> None:
        self.slack = slack_api
        self.folder = folder
        self.database = url
        config = create_sandbox(folder / "sandbox")
        data = yaml.safe_load(config.read_text())
        data["schedule"] = {
            "reminders": ["3s"],
            "missed_start": missed,
            "missed_start_grace": "10m",
            "lease": "2s",
        }
        config.write_text(yaml.safe_dump(data))
        self.config = config
        self.processes: list[Served] = []

    def start(self, *names: str) -> Served:
        """Start a process per name, all at once; returns the last, once every one answers."""
        started = [
            serve(
                name,
                self.folder,
                config=self.config,
                database=self.database,
                slack_url=self.slack.url,
            )
            for name in names
        ]
        self.processes += started
        wait_healthy(*started)
        return started[-1]

    def schedule_and_approve(self, served: Served) -> tuple[Message, datetime]:
        """alice asks for the upgrade a few seconds ahead, bob approves; (plan, start time)."""
        starts = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=LEAD)
        sender = served.sender()
        text = f"myst 3.9.1 at={starts:%Y-%m-%dT%H:%M:%S}Z"
        assert sender.send(*slack.slash_command(text, "alice", CHANNEL))[0] == 200
        plan = wait_for("the plan", lambda: self.plans())[-1]
        wait_for("the run's thread to be kept", self.thread_kept)  # before reactions count
        event = f"Ev{time.monotonic_ns()}"
        reaction = slack.reaction_added("bob", "white_check_mark", CHANNEL, plan.ts, event)
        assert sender.send(*reaction)[0] == 200
        wait_for("the approval", lambda: self.said(plan.ts, "is approved. It starts"))
        return plan, starts

    def plans(self) -> list[Message]:
        return [m for m in self.slack.messages(CHANNEL) if "Upgrade plan" in text_of(m)]

    def said(self, plan_ts: str, words: str) -> list[Message]:
        return [m for m in self.slack.threads(CHANNEL).get(plan_ts, []) if words in text_of(m)]

    def thread_kept(self) -> bool:
        store = SqlRunStore(self.database)
        try:
            runs = store.runs(limit=1)
            return bool(runs) and store.thread(runs[0].id) is not None
        finally:
            store.close()

    def run(self) -> Run:
        store = SqlRunStore(self.database)
        try:
            return store.runs(limit=1)[0]
        finally:
            store.close()

    def moves_to(self, state: RunState) -> int:
        store = SqlRunStore(self.database)
        try:
            return sum(e.to_state is state for e in store.events(store.runs(limit=1)[0].id))
        finally:
            store.close()

    def stop_all(self) -> None:
        for served in self.processes:
            served.stop()


def sleep_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


@pytest.fixture
def deployment_factory(
    slack_api: SlackEmulator, tmp_path: Path, fresh_url: str
) -> Iterator[type[Deployment]]:
    made: list[Deployment] = []
    upgrade_schema(fresh_url)

    def make(missed: str = "run") -> Deployment:
        deployment = Deployment(slack_api, tmp_path, fresh_url, missed)
        made.append(deployment)
        return deployment

    yield make  # type: ignore[misc]
    for deployment in made:
        deployment.stop_all()


def test_a_run_scheduled_before_a_crash_starts_once_after_the_restart(deployment_factory) -> None:
    deployment = deployment_factory("run")
    first = deployment.start("first")
    plan, starts = deployment.schedule_and_approve(first)
    first.kill()  # before the start time
    assert datetime.now(UTC) < starts
    sleep_until(starts + timedelta(seconds=0.5))

    second = deployment.start("second")  # after the start time, well within the grace
    late = wait_for("the late start", lambda: deployment.said(plan.ts, "min late"), timeout=30)
    assert "the bot was not running at its start time" in text_of(late[0])
    wait_for(
        "the run to succeed",
        lambda: deployment.run().state is RunState.SUCCEEDED,
        timeout=60,
    )
    assert deployment.moves_to(RunState.RUNNING) == 1
    time.sleep(1.5)  # a lease renewal later: nothing starts it again
    assert len(deployment.said(plan.ts, "starts now")) == 1
    assert deployment.moves_to(RunState.RUNNING) == 1
    assert "holds the lease" in second.text()


@pytest.mark.parametrize("fresh_url", ["sqlite"], indirect=True)  # the database is not its point
def test_with_missed_start_report_a_start_missed_while_down_is_reported_not_run(
    deployment_factory,
) -> None:
    deployment = deployment_factory("report")
    first = deployment.start("first")
    plan, starts = deployment.schedule_and_approve(first)
    first.kill()
    sleep_until(starts + timedelta(seconds=0.5))
    deployment.start("second")
    [told] = wait_for("the report", lambda: deployment.said(plan.ts, "did not start"), timeout=30)
    assert "missed_start: report" in text_of(told)
    assert deployment.run().state is RunState.EXPIRED
    assert deployment.moves_to(RunState.RUNNING) == 0


def test_two_processes_at_once_one_schedules_and_the_run_starts_once(deployment_factory) -> None:
    deployment = deployment_factory("run")
    two = deployment.start("one", "two")
    one = deployment.processes[0]
    plan, starts = deployment.schedule_and_approve(two)
    sleep_until(starts)
    wait_for("the start", lambda: deployment.said(plan.ts, "starts now, as scheduled"), timeout=30)
    wait_for(
        "the run to succeed",
        lambda: deployment.run().state is RunState.SUCCEEDED,
        timeout=60,
    )
    time.sleep(1.5)
    assert len(deployment.said(plan.ts, "starts now")) == 1
    assert len(deployment.said(plan.ts, "starts in 3 seconds")) == 1  # the reminder, once
    assert deployment.moves_to(RunState.RUNNING) == 1
    holders = [p for p in (one, two) if "holds the lease" in p.text()]
    assert len(holders) == 1
