"""The App Home tab: `views.publish` (https://docs.slack.dev/reference/methods/views.publish).

A home view holds at most 100 blocks (https://docs.slack.dev/reference/views/home-tab-views); Slack
reports a broken view as `invalid_arguments` with the rule in `response_metadata.messages`, and a
stale `hash` as `hash_conflict`.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from tests.slackemu import blockkit
from tests.slackemu.methods import Args, Context, Handler, SlackError, invalid, text_arg
from tests.slackemu.workspace import APP_ID, BOT_ID, TEAM_ID, HomeView, Workspace


def views_publish(ws: Workspace, args: Args, context: Context) -> dict[str, Any]:
    user = text_arg(args, "user_id")
    raw = args.get("view")
    if not user or raw is None:
        raise SlackError("invalid_arguments")
    try:
        view = json.loads(raw) if isinstance(raw, str | bytes) else raw
    except ValueError as exc:
        raise SlackError("invalid_arguments") from exc
    if not isinstance(view, dict) or view.get("type") != "home":
        raise invalid(
            "invalid_arguments", ["failed to match all allowed schemas [json-pointer:/view]"]
        )
    blocks = view.get("blocks")
    if not isinstance(blocks, list):
        raise invalid("invalid_arguments", ["missing required field: blocks [json-pointer:/view]"])
    problems = blockkit.check_blocks(blocks, pointer="/view/blocks", limit=blockkit.VIEW_BLOCKS)
    if problems:
        raise invalid("invalid_arguments", problems)
    current = ws.homes.get(user)
    expected = text_arg(args, "hash")
    if expected and current is not None and current.hash != expected:
        raise SlackError("hash_conflict")
    view_id = current.id if current else ws.new_id("V")
    view_hash = f"{int(time.time())}.{secrets.token_hex(4)}"
    published = {
        "id": view_id,
        "team_id": TEAM_ID,
        "type": "home",
        "blocks": blocks,
        "private_metadata": view.get("private_metadata", ""),
        "callback_id": view.get("callback_id", ""),
        "state": {"values": {}},
        "hash": view_hash,
        "clear_on_close": False,
        "notify_on_close": False,
        "close": None,
        "submit": None,
        "previous_view_id": None,
        "root_view_id": view_id,
        "app_id": APP_ID,
        "external_id": view.get("external_id", ""),
        "app_installed_team_id": TEAM_ID,
        "bot_id": BOT_ID,
    }
    ws.homes[user] = HomeView(id=view_id, user=user, view=published, hash=view_hash)
    return {"ok": True, "view": published}


HANDLERS: dict[str, Handler] = {"views.publish": views_publish}
