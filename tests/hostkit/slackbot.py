"""The bot served over HTTP exactly as `python -m bot serve` does, talking to the Slack emulator.

Tests drive it the way Slack does: signed requests to /slack/events. What the bot says comes
back through the emulator's record of Web API calls.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
import waitress
from pydantic import SecretStr

from bot.config import Config, Settings
from bot.domain.ports import Scheduler
from bot.engine.service import Store
from bot.engine.session import Ports
from bot.server import EVENTS_PATH, http_app
from bot.wiring import Bot, build_slack_bot
from tests.slackemu import requests as slack
from tests.slackemu.server import SlackEmulator
from tests.slackemu.workspace import Message

SIGNING_SECRET = "test-signing-secret-0123456789"
CHANNEL = "C0UPGRADE"
ALICE, BOB, CAROL = "U0ALICE01", "U0BOB0001", "U0CAROL01"

T = TypeVar("T")


def text_of(message: Message | dict[str, Any]) -> str:
    """Everything a person would read in a message: its text and every string in its blocks."""
    if isinstance(message, dict):
        return json.dumps(message, ensure_ascii=False)
    return message.text + "\n" + json.dumps(message.blocks, ensure_ascii=False)


@dataclass
class SlackBot:
    bot: Bot
    emulator: SlackEmulator
    sender: slack.SlackSender
    url: str

    def command(self, text: str, *, user: str = ALICE, channel: str = CHANNEL) -> tuple[int, str]:
        status, _, body = self.sender.send(*slack.slash_command(text, user, channel))
        return status, body.decode()

    def react(
        self,
        user: str,
        reaction: str,
        ts: str,
        *,
        channel: str = CHANNEL,
        removed: bool = False,
        event_id: str | None = None,
        retry_num: int | None = None,
    ) -> int:
        build = slack.reaction_removed if removed else slack.reaction_added
        event = event_id or f"Ev{time.monotonic_ns()}"
        status, _, _ = self.sender.send(
            *build(user, reaction, channel, ts, event), retry_num=retry_num
        )
        return status

    def click(
        self, user: str, action_id: str, value: str, ts: str, *, channel: str = CHANNEL
    ) -> int:
        status, _, _ = self.sender.send(*slack.block_action(user, action_id, value, channel, ts))
        return status

    def plan_messages(self, channel: str = CHANNEL) -> list[Message]:
        return [
            m
            for m in self.emulator.messages(channel)
            if "Upgrade plan" in m.text or "Upgrade plan" in text_of(m)
        ]

    def thread(self, ts: str, channel: str = CHANNEL) -> list[Message]:
        return self.emulator.threads(channel).get(ts, [])

    def ephemeral_texts(self, user: str) -> list[str]:
        return [e.text + json.dumps(e.blocks) for e in self.emulator.ephemerals(user)]


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0) -> T:
    """Poll until `probe` gives something truthy; fail naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def slack_bot_factory(
    slack_api: SlackEmulator,
) -> Iterator[Callable[..., SlackBot]]:
    """Serve a bot built from a config, ports and a store; stopped after the test."""
    started: list[tuple[Bot, Any, threading.Thread]] = []

    def serve(
        config: Config,
        *,
        ports: Ports | None = None,
        store: Store,
        database_url: str = "sqlite://",
        scheduler: Scheduler | None = None,
    ) -> SlackBot:
        settings = Settings(
            slack_bot_token=SecretStr(slack_api.token),
            slack_signing_secret=SecretStr(SIGNING_SECRET),
            slack_api_url=slack_api.url,
            database_url=database_url,
        )
        bot = build_slack_bot(
            settings, config, ports=ports, store=store, scheduler=scheduler, progress_interval=0.2
        )
        server = waitress.create_server(http_app(bot), host="127.0.0.1", port=0, threads=8)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        started.append((bot, server, thread))
        url = f"http://127.0.0.1:{server.effective_port}{EVENTS_PATH}"
        return SlackBot(
            bot=bot, emulator=slack_api, sender=slack.SlackSender(url, SIGNING_SECRET), url=url
        )

    yield serve
    for bot, server, thread in started:
        server.close()
        thread.join(timeout=5)
        bot.close()
