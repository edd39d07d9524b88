"""`python -m bot serve` in HTTP mode, as a process: Slack requests in, Web API calls out, and
the operator's side on the same port: /healthz, /readyz, /metrics and JSON log lines."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from adapters.sql_engine import create_store_engine
from adapters.sql_store import alembic_config, upgrade_schema
from bot.sandbox import create_sandbox
from tests.hostkit.services import free_port
from tests.hostkit.slackbot import CHANNEL, SIGNING_SECRET, text_of, wait_for
from tests.slackemu import requests as slack
from tests.slackemu.server import SlackEmulator

ROOT = Path(__file__).resolve().parents[2]
BOT_TOKEN = "xoxb-test"

Serve = Callable[..., tuple[str, subprocess.Popen[str]]]


@pytest.fixture
def serve(slack_api: SlackEmulator, tmp_path: Path) -> Iterator[Serve]:
    """Start the bot serving a sandbox over HTTP on a database (migrated here); gives its base URL
    and the process, stopped after the test."""
    started: list[subprocess.Popen[str]] = []

    def start(database: str, *arguments: str) -> tuple[str, subprocess.Popen[str]]:
        upgrade_schema(database)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
        env.update(
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_API_URL=slack_api.url,
            DATABASE_URL=database,
            BOT_CONFIG=str(create_sandbox(tmp_path / f"sandbox-{len(started)}")),
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--port", str(port), *arguments],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        base = f"http://127.0.0.1:{port}"
        wait_for("the bot to answer /healthz", lambda: _healthy(base, process), timeout=30)
        return base, process

    yield start
    for process in started:
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


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - loopback
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def _ready(base: str) -> tuple[int, dict[str, Any]]:
    status, body = _get(f"{base}/readyz")
    return status, json.loads(body)


def _sample(metrics: str, name: str, **labels: str) -> float | None:
    """The value of the one sample of `name` whose labels include `labels`."""
    for line in metrics.splitlines():
        found = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if found:
            pairs = dict(re.findall(r'(\w+)="([^"]*)"', found.group(1) or ""))
            if labels.items() <= pairs.items():
                return float(found.group(2))
    return None


def _stop(process: subprocess.Popen[str]) -> str:
    process.terminate()
    _, stderr = process.communicate(timeout=10)
    return stderr


def test_serve_answers_slack_over_http_and_reports_the_run(
    serve: Serve, slack_api: SlackEmulator, tmp_path: Path
):
    base, process = serve(f"sqlite:///{tmp_path}/bot.db")
    status, readiness = _ready(base)
    assert status == 200, readiness
    assert readiness["status"] == "ready"
    assert readiness["checks"]["scheduler"]["detail"] == "this process holds the scheduling lease"
    assert readiness["checks"]["slack"]["detail"].startswith("auth.test: ")
    assert len(slack_api.calls("auth.test")) == 2  # Bolt's at start, then the probe's, kept

    sender = slack.SlackSender(f"{base}/slack/events", SIGNING_SECRET)
    status, _, body = sender.send(*slack.slash_command("myst 3.9.1", "alice", CHANNEL))
    assert status == 200
    assert b"Planning" in body
    plan = wait_for(
        "the plan", lambda: [m for m in slack_api.messages(CHANNEL) if "Upgrade plan" in text_of(m)]
    )[-1]
    waiting = _get(f"{base}/metrics")[1]
    assert _sample(waiting, "upgradebot_approvals_waiting", stage="plan") == 1
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

    def counted() -> str | None:
        metrics = _get(f"{base}/metrics")[1]
        return metrics if _sample(metrics, "upgradebot_runs_finished_total") else None

    metrics = wait_for("the run to be counted", counted)
    assert _sample(metrics, "upgradebot_runs_finished_total", outcome="succeeded") == 1
    assert _sample(metrics, "upgradebot_runs_finished_total", product="myst-studio") == 1
    backup = {"product": "myst-studio", "phase": "upgrade", "step": "backup", "status": "succeeded"}
    assert _sample(metrics, "upgradebot_step_duration_seconds_count", **backup) == 1
    assert _sample(metrics, "upgradebot_approvals_waiting", stage="plan") == 0
    assert _sample(metrics, "upgradebot_runs_in_progress", state="running") == 0
    assert _sample(metrics, "upgradebot_scheduler_lease_held") == 1
    assert _sample(metrics, "upgradebot_slack_api_errors_total") is None  # none failed

    stderr = _stop(process)
    assert BOT_TOKEN not in stderr
    assert SIGNING_SECRET not in stderr
    lines = [json.loads(line) for line in stderr.splitlines()]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    (run_id,) = {line["run_id"] for line in lines if "run_id" in line}
    moves = [line["message"] for line in lines if line["logger"] == "bot.runs"]
    assert f"run {run_id} now running: started" in moves
    assert any(m.startswith(f"run {run_id}: upgrade step 2 `backup` succeeded in ") for m in moves)
    assert moves[-1] == f"run {run_id} now succeeded: every step and check passed"


def test_a_database_schema_behind_the_bot_makes_it_not_ready(serve: Serve, fresh_url: str):
    base, _ = serve(fresh_url)
    status, readiness = _ready(base)
    assert status == 200, readiness
    script = ScriptDirectory.from_config(alembic_config())
    (head,) = script.get_heads()
    previous = script.get_revision(head).down_revision
    engine = create_store_engine(fresh_url)
    try:
        with engine.begin() as connection:  # as if an older bot's database were restored
            connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": previous})
        status, readiness = _ready(base)
        assert status == 503
        assert readiness["status"] == "not ready"
        assert readiness["not_ready"] == ["database"]
        detail = readiness["checks"]["database"]["detail"]
        assert f"is at revision {previous}, but this bot needs {head}" in detail
        assert detail.endswith("Run `python -m bot db upgrade`.")
        assert readiness["checks"]["scheduler"]["ok"]
        assert readiness["checks"]["slack"]["ok"]
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})
        assert _ready(base)[0] == 200
    finally:
        engine.dispose()


def test_log_format_text_is_for_people(serve: Serve, tmp_path: Path):
    _, process = serve(f"sqlite:///{tmp_path}/bot.db", "--log-format", "text")
    stderr = _stop(process)
    assert re.search(
        r"WARNING bot\.server: serving Slack over HTTP .* on http://127\.0\.0\.1:\d+", stderr
    )
    with pytest.raises(json.JSONDecodeError):
        json.loads(stderr.splitlines()[0])


def test_a_port_in_use_gets_one_sentence(slack_api: SlackEmulator, tmp_path: Path):
    database = f"sqlite:///{tmp_path}/bot.db"
    upgrade_schema(database)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    env.update(
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=slack_api.url,
        DATABASE_URL=database,
        BOT_CONFIG=str(create_sandbox(tmp_path / "sandbox")),
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "bot", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        f"error: The bot cannot listen on 127.0.0.1:{port}: Address already in use. "
        "Choose another --port (or --host), or stop what uses it."
    )
