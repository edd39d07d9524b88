"""Web API methods of the emulator: chat and reactions, and the helpers every method shares.

Response shapes and error codes follow each method's reference page on docs.slack.dev
(https://docs.slack.dev/reference/methods/<method>). Every handler takes the parsed arguments,
changes the workspace, and returns the JSON body; a failure is raised as `SlackError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tests.slackemu import blockkit
from tests.slackemu.workspace import (
    APP_ID,
    BOT_ID,
    BOT_USER_ID,
    TEAM_ID,
    Ephemeral,
    StoredMessage,
    Version,
    Workspace,
)

# "Provide no more than 40,000 characters or risk truncation" (chat.postMessage, `text`).
MESSAGE_TEXT = 40_000
CHANNEL_ID = re.compile(r"^[CGDUW][A-Z0-9]{2,}$")

Args = Mapping[str, Any]


class SlackError(Exception):
    """A Web API failure: `{"ok": false, "error": code, **extra}` with HTTP 200."""

    def __init__(self, code: str, **extra: Any) -> None:
        super().__init__(code)
        self.code = code
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"ok": False, "error": self.code, **self.extra}


@dataclass(frozen=True, kw_only=True)
class Context:
    """Per-server settings a handler needs: where uploads go, what to do with over-long text."""

    origin: str
    long_text: Literal["truncate", "refuse"] = "truncate"
    # Opens a Socket Mode link and returns its URL (`apps.connections.open`).
    open_link: Callable[[], str] | None = None


Handler = Callable[[Workspace, Args, Context], dict[str, Any]]


def text_arg(args: Args, name: str) -> str | None:
    value = args.get(name)
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def flag(args: Args, name: str) -> bool:
    value = args.get(name)
    return value is True or (isinstance(value, str) and value.lower() in ("true", "1"))


def channel_arg(args: Args, name: str = "channel", *, error: str = "channel_not_found") -> str:
    channel = text_arg(args, name)
    if not channel or not CHANNEL_ID.match(channel):
        raise SlackError(error)
    return channel


def invalid(code: str, problems: list[str]) -> SlackError:
    """Slack lists each broken rule twice: bare in `errors`, prefixed in `response_metadata`."""
    return SlackError(
        code,
        errors=problems,
        response_metadata={"messages": [f"[ERROR] {p}" for p in problems]},
    )


def blocks_arg(args: Args) -> list[dict[str, Any]] | None:
    if args.get("blocks") is None:
        return None
    try:
        blocks = blockkit.parse_blocks(args["blocks"])
    except blockkit.BlocksFormatError as exc:
        raise SlackError("invalid_blocks_format") from exc
    problems = blockkit.check_blocks(blocks)
    if problems:
        raise invalid("invalid_blocks", problems)
    return blocks


def message_text(args: Args, context: Context) -> str | None:
    text = text_arg(args, "text")
    if text is not None and len(text) > MESSAGE_TEXT:
        if context.long_text == "refuse":
            raise SlackError("msg_too_long")
        text = text[:MESSAGE_TEXT]
    return text


def message_json(ws: Workspace, stored: StoredMessage) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "message",
        "user": stored.user,
        "bot_id": BOT_ID,
        "app_id": APP_ID,
        "team": TEAM_ID,
        "text": stored.text,
        "ts": stored.ts,
    }
    if stored.blocks:
        body["blocks"] = stored.blocks
    if stored.files:
        body["files"] = [{"id": file_id} for file_id in stored.files]
    if stored.thread_ts is not None:
        body["thread_ts"] = stored.thread_ts
        parent = ws.find(stored.channel, stored.thread_ts)
        body["parent_user_id"] = parent.user if parent else BOT_USER_ID
    return body


def chat_post_message(ws: Workspace, args: Args, context: Context) -> dict[str, Any]:
    channel = channel_arg(args)
    blocks = blocks_arg(args)
    text = message_text(args, context)
    if not text and not blocks and not args.get("attachments"):
        raise SlackError("no_text")
    thread_ts = text_arg(args, "thread_ts") or None
    stored = ws.post(
        channel=channel,
        text=text or "",
        blocks=blocks or [],
        thread_ts=thread_ts,
        reply_broadcast=bool(thread_ts) and flag(args, "reply_broadcast"),
    )
    return {"ok": True, "channel": channel, "ts": stored.ts, "message": message_json(ws, stored)}


def chat_update(ws: Workspace, args: Args, context: Context) -> dict[str, Any]:
    channel = channel_arg(args)
    stored = ws.find(channel, text_arg(args, "ts") or "")
    if stored is None:
        raise SlackError("message_not_found")
    if stored.user != BOT_USER_ID:
        raise SlackError("cant_update_message")
    blocks = blocks_arg(args)
    text = message_text(args, context)
    # Omitted `text` or `blocks` keep their previous value; an empty blocks array removes them.
    new_text = stored.text if text is None else text
    new_blocks = stored.blocks if blocks is None else blocks
    if not new_text and not new_blocks:
        raise SlackError("no_text")
    stored.previous.append(Version(text=stored.text, blocks=stored.blocks))
    stored.text, stored.blocks = new_text, new_blocks
    return {
        "ok": True,
        "channel": channel,
        "ts": stored.ts,
        "text": stored.text,
        "message": message_json(ws, stored),
    }


def chat_post_ephemeral(ws: Workspace, args: Args, context: Context) -> dict[str, Any]:
    channel = channel_arg(args)
    user = text_arg(args, "user") or ""
    if user not in ws.people:
        raise SlackError("user_not_in_channel")
    blocks = blocks_arg(args)
    text = message_text(args, context)
    if not text and not blocks:
        raise SlackError("no_text")
    ts = ws.clock.next_ts()
    ws.ephemerals.append(
        Ephemeral(
            channel=channel,
            user=user,
            message_ts=ts,
            text=text or "",
            blocks=blocks or [],
            thread_ts=text_arg(args, "thread_ts") or None,
        )
    )
    return {"ok": True, "message_ts": ts}


def chat_delete(ws: Workspace, args: Args, context: Context) -> dict[str, Any]:
    channel = channel_arg(args)
    ts = text_arg(args, "ts") or ""
    if ws.stored.pop((channel, ts), None) is None:
        raise SlackError("message_not_found")
    return {"ok": True, "channel": channel, "ts": ts}


def _reaction_target(ws: Workspace, args: Args) -> tuple[StoredMessage, str]:
    name = text_arg(args, "name") or ""
    if not args.get("channel") or not args.get("timestamp"):
        raise SlackError("no_item_specified")
    # Reaction names go without colons: ":white_check_mark:" is refused.
    if not name or ":" in name:
        raise SlackError("invalid_name")
    stored = ws.find(channel_arg(args), text_arg(args, "timestamp") or "")
    if stored is None:
        raise SlackError("message_not_found")
    return stored, name


def reactions_add(ws: Workspace, args: Args, context: Context) -> dict[str, Any]:
    stored, name = _reaction_target(ws, args)
    users = stored.reactions.setdefault(name, [])
    if BOT_USER_ID in users:
        raise SlackError("already_reacted")
    users.append(BOT_USER_ID)
    return {"ok": True}


def reactions_remove(ws: Workspace, args: Args, context: Context) -> dict[str, Any]:
    stored, name = _reaction_target(ws, args)
    users = stored.reactions.get(name, [])
    if BOT_USER_ID not in users:
        raise SlackError("no_reaction")
    users.remove(BOT_USER_ID)
    if not users:
        del stored.reactions[name]
    return {"ok": True}


def apps_connections_open(ws: Workspace, args: Args, context: Context) -> dict[str, Any]:
    # A WebSocket URL of the emulator's Socket Mode server (`socket_mode`), good for one connection.
    if context.open_link is None:
        raise SlackError("internal_error")
    return {"ok": True, "url": context.open_link()}


def files_upload(ws: Workspace, args: Args, context: Context) -> dict[str, Any]:
    # Retired on 2025-11-12 (docs.slack.dev/changelog/2024-04-a-better-way-to-upload-files-is-
    # here-to-stay); apps calling it now get this answer.
    raise SlackError("method_deprecated")


HANDLERS: dict[str, Handler] = {
    "chat.postMessage": chat_post_message,
    "chat.update": chat_update,
    "chat.postEphemeral": chat_post_ephemeral,
    "chat.delete": chat_delete,
    "reactions.add": reactions_add,
    "reactions.remove": reactions_remove,
    "files.upload": files_upload,
    "apps.connections.open": apps_connections_open,
}
# Methods that want an app-level token (`xapp-...`), and only in the Authorization header
# (https://docs.slack.dev/reference/methods/apps.connections.open).
APP_LEVEL_METHODS = frozenset({"apps.connections.open"})
