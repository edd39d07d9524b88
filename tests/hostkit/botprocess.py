"""`python -m bot serve` as real processes against the Slack emulator, to be killed like a crash.

Each process serves Slack over HTTP on a port of its own, logs to a file, and shares the database
and config it is given with any other started the same way: replicas of one bot.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.hostkit.services import free_port
from tests.hostkit.slackbot import SIGNING_SECRET, wait_for
from tests.slackemu import requests as slack

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Served:
    """One `python -m bot serve` process and its log."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def sender(self) -> slack.SlackSender:
        """Signed Slack requests to this process."""
        return slack.SlackSender(f"{self.url}/slack/events", SIGNING_SECRET)

    def healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"serve exited {self.process.returncode}:\n{self.text()}")
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:  # noqa: S310
                return response.status == 200
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown, no claim or lease given up, like a crash or an OOM kill."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def serve(name: str, folder: Path, *, config: Path, database: str, slack_url: str) -> Served:
    """Start a bot process; it answers on `url` once `wait_healthy` returns."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    env.update(
        SLACK_BOT_TOKEN="xoxb-test",
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=slack_url,
        DATABASE_URL=database,
        BOT_CONFIG=str(config),
    )
    log = folder / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Served(process=process, url=f"http://127.0.0.1:{port}", log=log)


def wait_healthy(*processes: Served) -> None:
    for served in processes:
        wait_for(f"{served.log.stem} to answer /healthz", served.healthy, timeout=30)
