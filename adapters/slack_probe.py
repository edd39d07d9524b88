"""Readiness of the link to Slack (`/readyz`).

Over HTTP, Slack calls the bot, so "connected" means that Slack takes the bot's token: the answer
of `auth.test`, asked when the bot starts and then at most once per `ttl` (probes come every few
seconds; Slack need not hear of each). In Socket Mode it is the WebSocket to Slack: open, and
answering the client's pings. slack_sdk's client closes a link whose pongs stopped only after
a minute or so; the probe says so as soon as three pings in a row went unanswered. (The client
reconnects by itself, once the link is closed.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.socket_mode.builtin.client import SocketModeClient

from bot.domain.errors import OperationalError

AUTH_TTL_SECONDS = 30.0


class SlackNotConnected(OperationalError):
    """Slack refuses the bot's token, cannot be reached, or the Socket Mode link is down."""


class SlackAuthProbe:
    """`auth.test` with the bot's token, its answer kept for `ttl` seconds (failures too)."""

    def __init__(
        self,
        client: WebClient,
        *,
        ttl: float = AUTH_TTL_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl = ttl
        self._monotonic = monotonic
        self._lock = threading.Lock()  # one question to Slack at a time; the others wait for it
        self._answer: tuple[float, bool, str] | None = None

    def check(self) -> str:
        """Whom Slack knows the token as; raises `SlackNotConnected`."""
        with self._lock:
            if self._answer is None or self._monotonic() - self._answer[0] >= self._ttl:
                self._answer = (self._monotonic(), *self._ask())
            _, ok, words = self._answer
        if not ok:
            raise SlackNotConnected(words)
        return words

    def _ask(self) -> tuple[bool, str]:
        try:
            answer = self._client.auth_test()
        except SlackApiError as exc:
            error = exc.response.get("error", "unknown_error") if exc.response else "no response"
            return False, f"Slack refuses the bot token (auth.test: {error})."
        except (SlackClientError, OSError) as exc:
            return False, f"Slack cannot be reached (auth.test: {type(exc).__name__})."
        return True, f"auth.test: {answer.get('user')} in {answer.get('team')}"


class SocketModeProbe:
    """Whether slack_sdk's Socket Mode client is connected to Slack, and Slack answers on it."""

    def __init__(self, client: SocketModeClient, *, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._clock = clock  # wall-clock seconds, as the client stamps its pings

    def check(self) -> str:
        """Raises `SlackNotConnected` while the link is down or silent."""
        session = self._client.current_session
        if not self._client.is_connected() or session is None:
            raise SlackNotConnected(
                "The Socket Mode link to Slack is down (the client keeps trying to reconnect)."
            )
        answered = session.last_ping_pong_time
        silent = self._clock() - answered if answered is not None else 0.0
        if silent > 3 * self._client.ping_interval:
            raise SlackNotConnected(
                f"The Socket Mode link to Slack has not answered a ping for {silent:.0f} s."
            )
        return "Socket Mode connected"
