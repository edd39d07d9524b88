"""The Bolt app: every listener acknowledges at once and hands the work to a bounded pool.

Slack wants an answer within 3 seconds, and planning alone may reach a host. So listeners only
parse what is cheap to parse (a malformed command is answered right in the acknowledgement),
then submit the rest to the task pool. Duplicate deliveries are recognised by event id further
in, so a retry changes nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.domain.approval import Decision
from bot.domain.errors import UserError
from bot.slack.blocks import (
    APPROVE_ACTION,
    APPROVE_REACTIONS,
    PLAN_LATEST_ACTION,
    REJECT_ACTION,
    REJECT_REACTIONS,
    parse_button_value,
    parse_plan_latest_value,
)
from bot.slack.blocks_report import RESUME_ACTION, ROLLBACK_ACTION
from bot.workers import Busy, WorkerPool
from commands.conversation import Conversation
from commands.grammar import Upgrade, parse

log = logging.getLogger(__name__)

COMMAND = "/upgrade"
BUSY = "The bot is busy right now; please try again in a minute."


def build_app(
    *,
    client: WebClient,
    signing_secret: str,
    conversation: Conversation,
    tasks: WorkerPool,
    verify_token: bool = True,
) -> App:
    app = App(
        client=client,
        signing_secret=signing_secret,
        token_verification_enabled=verify_token,
        logger=log,
    )

    def hand_off(fn: Any, **kwargs: Any) -> bool:
        try:
            tasks.submit(lambda: fn(**kwargs))
        except Busy:
            log.warning("task pool full: %s dropped", getattr(fn, "__name__", fn))
            return False
        return True

    @app.command(COMMAND)
    def on_command(ack: Ack, command: dict[str, Any]) -> None:
        text = command.get("text", "")
        try:
            parsed = parse(text)
        except UserError as exc:
            ack(text=str(exc))  # answered in the acknowledgement, seen by the user alone
            return
        if not hand_off(
            conversation.command, text=text, user=command["user_id"], channel=command["channel_id"]
        ):
            ack(text=BUSY)
            return
        if isinstance(parsed, Upgrade) and not parsed.dry_run:
            when = " with its start time" if parsed.scheduled else ""
            ack(
                text=f"Planning `{COMMAND} {text.strip()}`: the plan will appear in this "
                f"channel{when}."
            )
        else:
            ack()

    def on_button(ack: Ack, body: dict[str, Any], decision: Decision) -> None:
        ack()
        action = body["actions"][0]
        try:
            run_id, digest = parse_button_value(action.get("value", ""))
        except ValueError:
            log.warning("ignored a button with an unexpected value")
            return
        container = body.get("container", {})
        hand_off(
            conversation.vote,
            user=body["user"]["id"],
            channel=container.get("channel_id") or body["channel"]["id"],
            ts=container.get("message_ts", ""),
            decision=decision,
            via="button",
            run_id=run_id,
            digest=digest,
        )

    @app.action(APPROVE_ACTION)
    def on_approve(ack: Ack, body: dict[str, Any]) -> None:
        on_button(ack, body, Decision.APPROVE)

    @app.action(REJECT_ACTION)
    def on_reject(ack: Ack, body: dict[str, Any]) -> None:
        on_button(ack, body, Decision.REJECT)

    def on_run_button(ack: Ack, body: dict[str, Any], verb: str) -> None:
        """A button that names a run: as if its clicker typed `/upgrade <verb> <run>`."""
        ack()
        run = body["actions"][0].get("value", "")
        if not run.isdigit():
            log.warning("ignored a %s button with an unexpected value", verb)
            return
        channel = body.get("container", {}).get("channel_id") or body["channel"]["id"]
        hand_off(
            conversation.command, text=f"{verb} {run}", user=body["user"]["id"], channel=channel
        )

    @app.action(ROLLBACK_ACTION)
    def on_rollback(ack: Ack, body: dict[str, Any]) -> None:
        on_run_button(ack, body, "rollback")

    @app.action(RESUME_ACTION)
    def on_resume(ack: Ack, body: dict[str, Any]) -> None:
        on_run_button(ack, body, "resume")

    @app.action(PLAN_LATEST_ACTION)
    def on_plan_latest(ack: Ack, body: dict[str, Any]) -> None:
        """A digest's button: ask for that upgrade as `/upgrade` would, as the person clicking."""
        ack()
        try:
            product, version, env, instance = parse_plan_latest_value(
                body["actions"][0].get("value", "")
            )
        except ValueError:
            log.warning("ignored a plan-upgrade button with an unexpected value")
            return
        channel = body.get("container", {}).get("channel_id") or body["channel"]["id"]
        hand_off(
            conversation.command,
            text=f"{product} {version} env={env} instance={instance}",
            user=body["user"]["id"],
            channel=channel,
        )

    @app.event("reaction_added")
    def on_reaction_added(body: dict[str, Any], event: dict[str, Any]) -> None:
        if vote := _reaction_vote(body, event):
            hand_off(conversation.vote, via="reaction", **vote)

    @app.event("reaction_removed")
    def on_reaction_removed(body: dict[str, Any], event: dict[str, Any]) -> None:
        if vote := _reaction_vote(body, event):
            hand_off(conversation.withdraw, **vote)

    @app.event("app_home_opened")
    def on_home(event: dict[str, Any]) -> None:
        if event.get("tab", "home") == "home":
            hand_off(conversation.home, user=event["user"])

    return app


def _reaction_vote(body: dict[str, Any], event: dict[str, Any]) -> dict[str, Any] | None:
    """The vote a reaction stands for, or None for any other reaction or item."""
    name = event.get("reaction", "").split("::")[0]  # skin tones arrive as "name::skin-tone-2"
    if name in APPROVE_REACTIONS:
        decision = Decision.APPROVE
    elif name in REJECT_REACTIONS:
        decision = Decision.REJECT
    else:
        return None
    item = event.get("item", {})
    if item.get("type") != "message":
        return None
    return {
        "user": event["user"],
        "channel": item["channel"],
        "ts": item["ts"],
        "decision": decision,
        "event_id": body.get("event_id"),
    }
