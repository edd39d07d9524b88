"""The `Chat` port over Slack's Web API: views rendered to Block Kit, secrets redacted, limits kept.

Rate limits: slack_sdk's retry handler waits out a 429's `Retry-After` and tries again, and the
progress notifier throttles its edits. Slack API errors stop here and become `ChatUnavailable`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from bot.domain.errors import OperationalError
from bot.domain.redaction import Redactor
from bot.slack.blocks import render, render_home
from commands.views import HomeView, View

log = logging.getLogger(__name__)

RATE_LIMIT_RETRIES = 5
UNREACHABLE = "unreachable"  # the error counted when Slack could not be reached at all

# Told of every failed Web API call: (method, Slack's error code or UNREACHABLE). The metrics.
SlackErrors = Callable[[str, str], None]


def _no_count(method: str, error: str) -> None:
    pass


def _error_code(exc: SlackApiError) -> str:
    return str(exc.response.get("error", "unknown_error")) if exc.response else "no response"


def _method_name(exc: SlackApiError | None, method: str) -> str:
    """Slack's name of the method that failed (`chat.postMessage`): from the URL called when
    there is a response, else from the client method's name."""
    url = getattr(exc.response, "api_url", "") if exc is not None and exc.response else ""
    return url.rsplit("/", 1)[-1] if url else method.replace("_", ".")


class ChatUnavailable(OperationalError):
    """Slack refused or could not take a message."""


def slack_client(token: str, base_url: str) -> WebClient:
    """A Web API client that waits out rate limits (Retry-After) before giving up."""
    client = WebClient(token=token, base_url=base_url)
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES))
    return client


class SlackChat:
    """Implements `commands.chat.Chat` with a `WebClient`."""

    def __init__(
        self, client: WebClient, redactor: Redactor, *, on_error: SlackErrors = _no_count
    ) -> None:
        self._client = client
        self._redact = redactor
        self._on_error = on_error

    def post(
        self, channel: str, view: View, *, thread_ts: str | None = None, broadcast: bool = False
    ) -> str:
        message = render(view)
        arguments: dict[str, Any] = {
            "channel": channel,
            "text": message.text,
            "blocks": message.blocks,
        }
        if thread_ts:
            arguments["thread_ts"] = thread_ts
            arguments["reply_broadcast"] = broadcast
        response = self._call("chat_postMessage", arguments)
        return str(response["ts"])

    def update(self, channel: str, ts: str, view: View) -> None:
        message = render(view)
        self._call(
            "chat_update",
            {"channel": channel, "ts": ts, "text": message.text, "blocks": message.blocks},
        )

    def post_ephemeral(self, channel: str, user: str, view: View) -> None:
        message = render(view)
        self._call(
            "chat_postEphemeral",
            {"channel": channel, "user": user, "text": message.text, "blocks": message.blocks},
        )

    def upload(
        self, channel: str, thread_ts: str, *, filename: str, content: str, title: str
    ) -> None:
        # files_upload_v2 is Slack's external upload flow: get an upload URL, send, complete
        self._call(
            "files_upload_v2",
            {
                "channel": channel,
                "thread_ts": thread_ts,
                "filename": filename,
                "title": title,
                "content": content,
            },
        )

    def publish_home(self, user: str, view: HomeView) -> None:
        self._call("views_publish", {"user_id": user, "view": render_home(view)})

    def _call(self, method: str, arguments: dict[str, Any]) -> Any:
        safe = self._redact.value(arguments)
        try:
            return getattr(self._client, method)(**safe)
        except SlackApiError as exc:
            error = _error_code(exc)
            self._on_error(_method_name(exc, method), error)
            raise ChatUnavailable(f"Slack refused {method}: {error}.") from exc
        except (SlackClientError, OSError) as exc:
            self._on_error(_method_name(None, method), UNREACHABLE)
            raise ChatUnavailable(f"Slack could not be reached for {method}: {exc}.") from exc


class SlackDirectory:
    """Implements `Directory` with the Web API (user group members, people's time zones)."""

    def __init__(self, client: WebClient, *, on_error: SlackErrors = _no_count) -> None:
        self._client = client
        self._on_error = on_error

    def group_members(self, group: str) -> frozenset[str]:
        try:
            response = self._client.usergroups_users_list(usergroup=group)
        except SlackApiError as exc:
            error = _error_code(exc)
            self._on_error("usergroups.users.list", error)
            raise ChatUnavailable(
                f"Slack could not list the members of user group {group}: {error}. Check the "
                "group id in the policy (S...) and the bot's usergroups:read scope."
            ) from exc
        except (SlackClientError, OSError) as exc:
            self._on_error("usergroups.users.list", UNREACHABLE)
            raise ChatUnavailable(f"Slack could not be reached for user group {group}.") from exc
        return frozenset(response.get("users", []))

    def time_zone(self, user: str) -> str | None:
        """The user's time zone from users.info (`tz`), or None if Slack does not say."""
        try:
            response = self._client.users_info(user=user)
        except (SlackApiError, SlackClientError, OSError) as exc:
            code = _error_code(exc) if isinstance(exc, SlackApiError) else UNREACHABLE
            self._on_error("users.info", code)
            log.warning("could not read the time zone of %s: %s", user, exc)
            return None
        zone = (response.get("user") or {}).get("tz")
        return zone if isinstance(zone, str) and zone else None
