"""`python -m bot demo` and `python -m bot console`: the conversation without Slack or Docker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bot.sandbox import create_sandbox

ROOT = Path(__file__).resolve().parents[2]


def _environment(**extra: str) -> dict[str, str]:
    """No Slack tokens, and a Docker socket that does not exist: neither may be needed."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SLACK_") and k not in ("BOT_CONFIG", "DATABASE_URL")
    }
    env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    env.update(extra)
    return env


def test_the_demo_plays_a_verified_upgrade():
    done = subprocess.run(
        [sys.executable, "-m", "bot", "demo"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_environment(COLUMNS="120"),
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "alice> /upgrade myst 3.9.1" in out
    assert "bob> approve 1" in out
    assert "Backed up to" in out
    assert "MyST Studio 3.9.1 started" in out
    assert "console_version is 3.9.1" in out
    assert "Demo passed: run #1 ended succeeded." in out


def test_the_console_takes_commands_and_votes_as_named_users(tmp_path: Path):
    config = create_sandbox(tmp_path / "sandbox")
    script = "/upgrade myst 3.9.1\napprove 1\nas bob\napprove 1\n"
    done = subprocess.run(
        [sys.executable, "-m", "bot", "console"],
        input=script,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env=_environment(
            BOT_CONFIG=str(config),
            DATABASE_URL=f"sqlite:///{tmp_path}/bot.db",
            USER="alice",
            LOGNAME="alice",
            COLUMNS="120",
        ),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "Upgrade plan: MyST Studio 3.9.0.3 → 3.9.1" in out
    assert "You are not an approver for sandbox" in out  # alice tried first
    assert "You are now bob." in out
    assert "upgraded and verified" in out
