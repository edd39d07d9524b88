"""`python -m bot serve` in Socket Mode serves /healthz, /readyz and /metrics on `--port` (Slack's
events come over the socket, so /slack/events is not there); /readyz reports the Socket Mode link.
(How that check follows a link that drops or goes silent: tests/integration/test_readiness.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.sql_store import upgrade_schema
from bot.sandbox import create_sandbox
from tests.hostkit.services import free_port
from tests.hostkit.slackbot import wait_for
from tests.slackemu.server import SlackEmulator

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def served(slack_api: SlackEmulator, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    database = f"sqlite:///{tmp_path}/bot.db"
    upgrade_schema(database)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    env.update(
        SLACK_APP_TOKEN=slack_api.app_token,
        SLACK_BOT_TOKEN=slack_api.token,
        SLACK_SIGNING_SECRET="socket-mode-needs-no-signatures-but-the-bot-wants-one",
        SLACK_API_URL=slack_api.url,
        BOT_CONFIG=str(create_sandbox(tmp_path / "sandbox")),
        DATABASE_URL=database,
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
        wait_for("/healthz in Socket Mode", lambda: _get(base, "/healthz", process)[0] == 200)
        yield base, process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def _get(base: str, path: str, process: subprocess.Popen[str] | None = None) -> tuple[int, str]:
    if process is not None and process.poll() is not None:
        raise AssertionError(f"serve exited {process.returncode}: {process.stderr.read()}")  # type: ignore[union-attr]
    try:
        with urllib.request.urlopen(f"{base}{path}", timeout=5) as answer:  # noqa: S310 - loopback
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()
    except OSError:
        return 0, ""


def _ready(base: str) -> tuple[int, dict[str, Any]]:
    status, body = _get(base, "/readyz")
    return status, json.loads(body)


def test_socket_mode_serves_the_operators_endpoints_and_stops_cleanly(
    served: tuple[str, subprocess.Popen[str]], slack_api: SlackEmulator
) -> None:
    base, process = served
    slack_api.socket_mode.connected(timeout=20)
    status, readiness = _ready(base)
    assert status == 200, readiness
    assert readiness["checks"]["slack"] == {"ok": True, "detail": "Socket Mode connected"}
    assert readiness["checks"]["scheduler"]["ok"]
    assert readiness["checks"]["database"]["ok"]
    assert _get(base, "/slack/events")[0] == 404  # Slack's events come over the socket
    status, metrics = _get(base, "/metrics")
    assert status == 200
    assert 'upgradebot_approvals_waiting{stage="plan"} 0.0' in metrics

    process.send_signal(signal.SIGINT)  # what the image's STOPSIGNAL sends
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert slack_api.app_token not in stderr
    assert slack_api.token not in stderr
