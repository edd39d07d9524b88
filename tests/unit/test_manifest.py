"""The Slack manifest asks for exactly what the bot uses."""

from pathlib import Path

import yaml

from bot.slack.app import COMMAND
from bot.slack.blocks import APPROVE_REACTIONS, REJECT_REACTIONS

MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "slack-manifest.yaml"
SOURCES = Path(__file__).resolve().parents[2] / "bot" / "slack"


def _manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


def test_the_command_is_the_one_the_app_listens_to():
    [command] = _manifest()["features"]["slash_commands"]
    assert command["command"] == COMMAND


def test_every_subscribed_event_has_a_listener_and_every_listener_a_subscription():
    events = set(_manifest()["settings"]["event_subscriptions"]["bot_events"])
    app_source = (SOURCES / "app.py").read_text()
    listened = {
        e
        for e in ("app_home_opened", "reaction_added", "reaction_removed", "message", "app_mention")
        if f'@app.event("{e}")' in app_source
    }
    assert events == listened


def test_scopes_are_those_the_web_api_calls_need():
    scopes = set(_manifest()["oauth_config"]["scopes"]["bot"])
    chat_source = (SOURCES / "chat.py").read_text()
    needed = {"commands"}
    if "chat_postMessage" in chat_source:
        needed.add("chat:write")
    if "files_upload_v2" in chat_source:
        needed.add("files:write")
    if "usergroups_users_list" in chat_source:
        needed.add("usergroups:read")
    if "users_info" in chat_source:
        needed.add("users:read")
    if APPROVE_REACTIONS or REJECT_REACTIONS:
        needed.add("reactions:read")
    assert scopes == needed
