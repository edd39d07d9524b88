"""`python -m bot serve` in HTTP mode, as a process: Slack requests in, Web API calls out."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.sql_store import upgrade_schema
from bot.sandbox import create_sandbox
from tests.hostkit.services import free_port
from tests.hostkit.slackbot import CHANNEL, SIGNING_SECRET, text_of, wait_for
from tests.slackemu import requests as slack
from tests.slackemu.server import SlackEmulator

ROOT = Path(__file__).resolve().parents[2]
BOT_TOKEN = "xoxb-test"


@pytest.fixture
def served(slack_api: SlackEmulator, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """The bot serving a sandbox over HTTP; yields its events URL and the process."""
    database = f"sqlite:///{tmp_path}/bot.db"
    upgrade_schema(database)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    env.update(
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=slack_api.url,
        DATABASE_URL=database,
        BOT_CONFIG=str(create_sandbox(tmp_path / "sandbox")),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for("the bot to answer /healthz", lambda: _healthy(base, process), timeout=30)
        yield f"{base}/slack/events", process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _healthy(base: str, process: subprocess.Popen[str]) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"serve exited {process.returncode}: {process.stderr.read()}")  # type: ignore[union-attr]
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=1) as response:  # noqa: S310
            return response.status == 200
    except OSError:
        return False


def test_serve_answers_slack_over_http(served, slack_api: SlackEmulator):
    url, process = served
    sender = slack.SlackSender(url, SIGNING_SECRET)
    status, _, body = sender.send(*slack.slash_command("myst 3.9.1", "alice", CHANNEL))
    assert status == 200
    assert b"Planning" in body
    plan = wait_for(
        "the plan", lambda: [m for m in slack_api.messages(CHANNEL) if "Upgrade plan" in text_of(m)]
    )[-1]
    status, _, _ = sender.send(
        *slack.reaction_added("bob", "white_check_mark", CHANNEL, plan.ts, "Ev0SERVE1")
    )
    assert status == 200
    summary = wait_for(
        "the summary",
        lambda: [m for m in slack_api.threads(CHANNEL).get(plan.ts, []) if m.reply_broadcast],
    )[-1]
    assert "console_version is 3.9.1" in text_of(summary)
    assert "Backed up to" in text_of(summary) or "backup" in text_of(summary).lower()
    assert sender.send(*slack.slash_command("help", "alice", CHANNEL), bad_signature=True)[0] == 401

    process.terminate()
    _, stderr = process.communicate(timeout=10)
    assert BOT_TOKEN not in stderr
    assert SIGNING_SECRET not in stderr
