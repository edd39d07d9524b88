"""Requests as Slack sends them to an app: signed, in Slack's payload formats, retried on demand.

Each builder assembles its payload here, field by field, in the format Slack documents for it, and
returns `(body bytes, content type)`. Ids are the emulated workspace's (`workspace.TEAM_ID`,
`APP_ID`, `BOT_USER_ID`), so a request names the same team and app that `auth.test` answers with.

- Slash commands (https://docs.slack.dev/interactivity/implementing-slash-commands): a form POST
  with `token`, `team_id`, `team_domain`, `channel_id`, `channel_name`, `user_id`, `user_name`,
  `command`, `text`, `api_app_id`, `is_enterprise_install`, `response_url` and `trigger_id`.
- Events API (https://docs.slack.dev/apis/events-api/): a JSON POST of the `event_callback`
  envelope (`token`, `team_id`, `api_app_id`, `event`, `type`, `event_id`, `event_time`,
  `authorizations`, `is_ext_shared_channel`, `event_context`) around the event itself, as on
  https://docs.slack.dev/reference/events/reaction_added (and `reaction_removed`,
  `app_home_opened`). `url_verification` has no envelope: `token`, `challenge`, `type`.
- Interactions (https://docs.slack.dev/reference/interaction-payloads/block_actions-payload): a
  form POST whose single field `payload` holds the `block_actions` JSON.

Signing, from https://docs.slack.dev/authentication/verifying-requests-from-slack: the base string
is `v0:{X-Slack-Request-Timestamp}:{raw body}`, the signature `v0=` + hex HMAC-SHA256 of it keyed
with the signing secret, sent as `X-Slack-Signature`. Slack retries an event delivery that was not
acknowledged, with `X-Slack-Retry-Num` and `X-Slack-Retry-Reason` (https://docs.slack.dev/apis/
events-api/#retries).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlencode

from tests.slackemu.workspace import APP_ID, BOT_ID, BOT_USER_ID, SEED_PEOPLE, TEAM_ID

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"

# The deprecated verification token Slack still sends in every payload; apps that verify
# signatures (Bolt does) ignore it.
TOKEN = "emulated-verification-token"
TEAM_DOMAIN = "emulated"

SlackRequest = tuple[bytes, str]

_NAMES = {person.id: person.name for person in SEED_PEOPLE}
_serial = itertools.count(1)


# -- signing -----------------------------------------------------------------------------------


def signature(signing_secret: str, timestamp: str | int, body: bytes) -> str:
    """`X-Slack-Signature` for this body at this timestamp."""
    base = b"v0:" + str(timestamp).encode() + b":" + body
    digest = hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()
    return f"v0={digest}"


def signed_headers(
    signing_secret: str, body: bytes, content_type: str, *, timestamp: str | int | None = None
) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": signature(signing_secret, stamp, body),
    }


# -- values Slack generates ----------------------------------------------------------------------


def _ts() -> str:
    """A Slack timestamp: epoch seconds with six decimals."""
    return f"{time.time():.6f}"


def _trigger_id() -> str:
    """Short-lived, opaque; shaped like the documented `13345224609.738474920.8088930838d...`."""
    return f"{int(time.time() * 1000)}.{next(_serial)}.{secrets.token_hex(16)}"


def _response_url(kind: str) -> str:
    """`https://hooks.slack.com/{commands|actions}/{team}/{id}/{secret}` as in Slack's examples."""
    return f"https://hooks.slack.com/{kind}/{TEAM_ID}/{next(_serial)}/{secrets.token_urlsafe(18)}"


def _user_name(user_id: str) -> str:
    return _NAMES.get(user_id, user_id.lower())


def _channel_name(channel_id: str) -> str:
    # The name `conversations.info` gives the channel in the emulator.
    return channel_id.lower()


# -- slash commands ------------------------------------------------------------------------------


def slash_command(
    text: str,
    user_id: str,
    channel_id: str,
    command: str = "/upgrade",
    *,
    user_name: str | None = None,
    response_url: str | None = None,
) -> SlackRequest:
    """A slash command invocation, form-encoded like Slack posts it."""
    fields = {
        "token": TOKEN,
        "team_id": TEAM_ID,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel_id,
        "channel_name": _channel_name(channel_id),
        "user_id": user_id,
        "user_name": _user_name(user_id) if user_name is None else user_name,
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": _response_url("commands") if response_url is None else response_url,
        "trigger_id": _trigger_id(),
    }
    return urlencode(fields).encode(), FORM


# -- Events API ----------------------------------------------------------------------------------


def _event_context(event_type: str, channel: str | None) -> str:
    """An opaque handle for `apps.event.authorizations.list`; apps only pass it back."""
    about = {"et": event_type, "tid": TEAM_ID, "aid": APP_ID, "cid": channel}
    encoded = base64.urlsafe_b64encode(json.dumps(about, separators=(",", ":")).encode())
    return "4-" + encoded.decode().rstrip("=")


def _event_callback(event: Mapping[str, Any], event_id: str, channel: str | None) -> SlackRequest:
    """`event` inside the outer `event_callback` envelope shared by every Events API delivery."""
    envelope = {
        "token": TOKEN,
        "team_id": TEAM_ID,
        "api_app_id": APP_ID,
        "event": dict(event),
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        # The one installation the event is visible to: the bot's, in the emulated workspace.
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": _event_context(event["type"], channel),
    }
    return json.dumps(envelope).encode(), JSON


def _reaction(
    kind: str,
    user: str,
    reaction: str,
    channel: str,
    ts: str,
    event_id: str,
    item_user: str | None,
) -> SlackRequest:
    event = {
        "type": kind,
        "user": user,
        "reaction": reaction,
        # Who wrote the message reacted to; the bot's own messages unless told otherwise.
        "item_user": BOT_USER_ID if item_user is None else item_user,
        "item": {"type": "message", "channel": channel, "ts": ts},
        "event_ts": _ts(),
    }
    return _event_callback(event, event_id, channel)


def reaction_added(
    user: str, reaction: str, channel: str, ts: str, event_id: str, *, item_user: str | None = None
) -> SlackRequest:
    """`reaction_added` on the message `ts` of `channel` (an `event_callback`)."""
    return _reaction("reaction_added", user, reaction, channel, ts, event_id, item_user)


def reaction_removed(
    user: str, reaction: str, channel: str, ts: str, event_id: str, *, item_user: str | None = None
) -> SlackRequest:
    """`reaction_removed` on the message `ts` of `channel` (an `event_callback`)."""
    return _reaction("reaction_removed", user, reaction, channel, ts, event_id, item_user)


def app_home_opened(user: str, event_id: str, *, channel: str | None = None) -> SlackRequest:
    """`app_home_opened` for the Home tab; `channel` is the app's DM with `user` (a `D` id).

    Without `view`: Slack adds it only once a Home view has been published for the user.
    """
    channel = f"D{user[1:]}" if channel is None else channel
    event = {
        "type": "app_home_opened",
        "user": user,
        "channel": channel,
        "tab": "home",
        "event_ts": _ts(),
    }
    return _event_callback(event, event_id, channel)


def url_verification(challenge: str) -> SlackRequest:
    """The handshake Slack sends when the Request URL is saved; the app must echo `challenge`."""
    payload = {"token": TOKEN, "challenge": challenge, "type": "url_verification"}
    return json.dumps(payload).encode(), JSON


# -- interactions ----------------------------------------------------------------------------------


def _elements(blocks: Any) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """(block_id, element) for every interactive element of a message's blocks."""
    for block in blocks if isinstance(blocks, list) else []:
        if not isinstance(block, dict):
            continue
        found = [block.get("accessory"), *(block.get("elements") or [])]
        for element in found:
            if isinstance(element, dict) and "action_id" in element:
                yield block.get("block_id"), element


def block_action(
    user: str,
    action_id: str,
    value: str,
    channel: str,
    message_ts: str,
    *,
    block_id: str | None = None,
    message: Mapping[str, Any] | None = None,
    response_url: str | None = None,
) -> SlackRequest:
    """A button click on the bot's message `message_ts`, posted as `payload=<JSON>`.

    `message` is the message clicked, e.g. the `message` that `chat.postMessage` answered, so the
    app sees the blocks it really posted; the action then carries that button's text and block.
    Without it, the message is the bot's with one actions block holding just this button.
    """
    button: dict[str, Any] = {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": "Approve", "emoji": True},
        "value": value,
    }
    if message is None:
        block_id = "approval" if block_id is None else block_id
        clicked = {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "text": "Approval requested",
            "ts": message_ts,
            "blocks": [{"type": "actions", "block_id": block_id, "elements": [button]}],
        }
    else:
        clicked = {**message, "ts": message_ts}
        for posted_block, element in _elements(clicked.get("blocks")):
            if element["action_id"] == action_id:
                button = {**button, "type": element.get("type", "button")}
                button["text"] = element.get("text", button["text"])
                block_id = posted_block if block_id is None else block_id
                break
        block_id = "approval" if block_id is None else block_id
    action = {
        "action_id": action_id,
        "block_id": block_id,
        "text": button["text"],
        "value": value,
        "type": button["type"],
        "action_ts": _ts(),
    }
    name = _user_name(user)
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user, "username": name, "name": name, "team_id": TEAM_ID},
        "api_app_id": APP_ID,
        "token": TOKEN,
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel,
            "is_ephemeral": False,
        },
        "trigger_id": _trigger_id(),
        "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": _channel_name(channel)},
        "message": clicked,
        "state": {"values": {}},
        "response_url": _response_url("actions") if response_url is None else response_url,
        "actions": [action],
    }
    return urlencode({"payload": json.dumps(payload)}).encode(), FORM


# -- sending -----------------------------------------------------------------------------------

Response = tuple[int, dict[str, str], bytes]


class SlackSender:
    """Posts to an app's Request URL the way Slack does: signed, or mis-signed on purpose."""

    def __init__(self, url: str, signing_secret: str, *, timeout: float = 10) -> None:
        self.url = url
        self.signing_secret = signing_secret
        self.timeout = timeout

    def send(
        self,
        body: bytes,
        content_type: str,
        *,
        retry_num: int | None = None,
        retry_reason: str = "http_timeout",
        timestamp: str | int | None = None,
        bad_signature: bool = False,
    ) -> Response:
        """POST one request; returns (status, headers, body) whatever the status."""
        secret = self.signing_secret + ("-wrong" if bad_signature else "")
        headers = signed_headers(secret, body, content_type, timestamp=timestamp)
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = retry_reason
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return response.status, dict(response.headers.items()), response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, dict(error.headers.items()), error.read()
