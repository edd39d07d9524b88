"""Who is who: `auth.test`, `users.info`, `usergroups.users.list`, `conversations.info`.

Shapes from https://docs.slack.dev/reference/methods/users.info (with `tz`, `tz_label`, `tz_offset`)
and https://docs.slack.dev/reference/methods/usergroups.users.list (`no_such_subteam`).
"""

from __future__ import annotations

from typing import Any

from tests.slackemu.methods import Args, Context, Handler, SlackError, channel_arg, text_arg
from tests.slackemu.workspace import BOT_ID, BOT_USER_ID, TEAM_ID, TEAM_NAME, Workspace


def auth_test(ws: Workspace, args: Args, context: Context) -> dict[str, Any]:
    return {
        "ok": True,
        "url": "https://emulated.slack.com/",
        "team": TEAM_NAME,
        "user": ws.people[BOT_USER_ID].name,
        "team_id": TEAM_ID,
        "user_id": BOT_USER_ID,
        "bot_id": BOT_ID,
        "is_enterprise_install": False,
    }


def users_info(ws: Workspace, args: Args, context: Context) -> dict[str, Any]:
    person = ws.people.get(text_arg(args, "user") or "")
    if person is None:
        raise SlackError("user_not_found")
    return {"ok": True, "user": person.as_user()}


def usergroups_users_list(ws: Workspace, args: Args, context: Context) -> dict[str, Any]:
    members = ws.groups.get(text_arg(args, "usergroup") or "")
    if members is None:
        raise SlackError("no_such_subteam")
    return {"ok": True, "users": list(members)}


def conversations_info(ws: Workspace, args: Args, context: Context) -> dict[str, Any]:
    channel = channel_arg(args)
    kind = channel[0]
    return {
        "ok": True,
        "channel": {
            "id": channel,
            "name": channel.lower(),
            "is_channel": kind == "C",
            "is_group": kind == "G",
            "is_im": kind == "D",
            "is_private": kind in "GD",
            "is_archived": False,
            "is_member": True,
        },
    }


HANDLERS: dict[str, Handler] = {
    "auth.test": auth_test,
    "users.info": users_info,
    "usergroups.users.list": usergroups_users_list,
    "conversations.info": conversations_info,
}
