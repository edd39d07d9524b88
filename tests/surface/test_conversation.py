"""The whole conversation over signed Slack requests, against the in-memory MyST instance.

The bot is served over HTTP as in production; Slack is the emulator. What the bot said is read
back from the emulator's record of its Web API calls.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from bot.config import Config
from bot.domain.inventory import Policy
from bot.domain.run import RunState
from bot.runbooks import BUNDLED, load_runbooks
from bot.server import EVENTS_PATH, ForegroundSocketMode, http_app
from bot.slack.blocks import APPROVE_ACTION
from tests.hostkit.slackbot import ALICE, BOB, CAROL, CHANNEL, SlackBot, text_of, wait_for
from tests.slackemu import requests as slack_requests
from tests.slackemu.workspace import Message
from tests.unit.memory_world import BACKUP, MemoryWorld, myst_world

ONE_APPROVER = Policy(approvers=(BOB, CAROL), approvals_required=1)


def _bot(factory, world: MemoryWorld, *, rate_limits: bool = False) -> SlackBot:  # type: ignore[no-untyped-def]
    """Slack's posting limits (1 message a second per channel) are on only where a test is about
    pacing: elsewhere they would only make the suite slow."""
    config = Config(
        inventory=world.inventory, catalog=load_runbooks(BUNDLED), source=Path("memory")
    )
    bot = factory(config, ports=world.ports, store=world.store)
    bot.emulator.limiter.enabled = rate_limits
    return bot


@pytest.fixture
def world() -> MemoryWorld:
    return myst_world(ONE_APPROVER)


@pytest.fixture
def bot(slack_bot_factory, world) -> SlackBot:  # type: ignore[no-untyped-def]
    return _bot(slack_bot_factory, world)


def _request(bot: SlackBot, text: str = "myst 3.9.1") -> tuple[str, str]:
    """Ask for an upgrade; returns (plan ts, approval request ts)."""
    status, body = bot.command(text)
    assert status == 200
    assert "Planning" in body
    plan = wait_for("the plan message", lambda: bot.plan_messages())[-1]
    replies = wait_for("the approval request", lambda: bot.thread(plan.ts))
    return plan.ts, replies[0].ts


def _run_state(world: MemoryWorld) -> RunState:
    return world.store.runs(limit=1)[0].state


def test_from_slash_command_to_verified_upgrade(slack_bot_factory, world: MemoryWorld):
    bot = _bot(slack_bot_factory, world, rate_limits=True)
    plan_ts, approval_ts = _request(bot)
    plan = text_of(bot.emulator.message(CHANNEL, plan_ts))
    for expected in ("3.9.0.3", "3.9.1", "prod", "in-place", "2-5 minutes", "pull.sh 3.9.1"):
        assert expected in plan
    approval = text_of(bot.emulator.message(CHANNEL, approval_ts))
    assert f"<@{BOB}>" in approval
    assert APPROVE_ACTION in approval

    assert bot.react(BOB, "white_check_mark", plan_ts) == 200
    summary = wait_for(
        "the summary", lambda: [m for m in bot.thread(plan_ts) if m.reply_broadcast]
    )[-1]
    text = text_of(summary)
    assert BACKUP in text
    assert "MyST Studio 3.9.1 started" in text
    assert "console_version is 3.9.1" in text
    assert _run_state(world) is RunState.SUCCEEDED
    progress = [m for m in bot.thread(plan_ts) if m.edits > 0 and "Run #" in text_of(m)]
    assert progress, "the progress message was never edited in place"
    step_replies = [m for m in bot.thread(plan_ts) if "Step " in text_of(m)]
    assert len(step_replies) >= 7
    # the approval request no longer offers buttons once decided
    assert APPROVE_ACTION not in text_of(bot.emulator.message(CHANNEL, approval_ts))


def test_a_malformed_command_is_answered_in_the_acknowledgement(bot: SlackBot):
    started = time.monotonic()
    status, body = bot.command("myst")
    assert status == 200
    assert time.monotonic() - started < 3  # Slack's deadline, with a wide margin
    assert "needs a product and a version" in body
    assert bot.emulator.calls("chat.postMessage") == []


class HeldBody(io.RawIOBase):
    """A request body that arrives only when released: the request stays in flight till then."""

    def __init__(self) -> None:
        self.released = threading.Event()

    def read(self, size: int = -1) -> bytes:
        self.released.wait(timeout=30)
        return b"{}"


def test_planning_waits_while_another_slack_request_is_being_answered(bot: SlackBot):
    body = HeldBody()
    environ = {
        "REQUEST_METHOD": "POST",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "PATH_INFO": EVENTS_PATH,
        "CONTENT_LENGTH": "2",
        "CONTENT_TYPE": "application/json",
        "wsgi.input": body,
    }
    answers: list[str] = []
    held = threading.Thread(
        target=lambda: http_app(bot.bot)(environ, lambda status, _: answers.append(status))
    )
    held.start()
    try:
        status, answer = bot.command("myst 3.9.1")
        assert (status, "Planning" in answer) == (200, True)  # the ack is not held back
        time.sleep(0.5)  # well within the second the planning may wait
        assert bot.plan_messages() == []
    finally:
        body.released.set()
        held.join(timeout=10)
    assert answers == ["401 Unauthorized"]  # unsigned: refused, and no longer in flight
    assert wait_for("the plan once no request is in flight", bot.plan_messages)


class SlowAckLink:
    """Slack's end of a Socket Mode link, slow to take the ack: it notes the plans posted while
    the ack is still being sent."""

    logger = logging.getLogger("tests.slow_ack_link")

    def __init__(self, bot: SlackBot) -> None:
        self.bot = bot
        self.acks: list[SocketModeResponse] = []
        self.plans_meanwhile: list[Message] = []

    def send_socket_mode_response(self, response: SocketModeResponse) -> None:
        time.sleep(0.5)  # well within the second the planning may wait
        self.plans_meanwhile = self.bot.plan_messages()
        self.acks.append(response)


def test_planning_waits_while_an_ack_goes_out_over_socket_mode(bot: SlackBot):
    body, _ = slack_requests.slash_command("myst 3.9.1", ALICE, CHANNEL)
    fields = dict(parse_qsl(body.decode(), keep_blank_values=True))
    request = SocketModeRequest(
        type="slash_commands", envelope_id="e-1", payload=fields, accepts_response_payload=True
    )
    handler = ForegroundSocketMode(bot.bot, "xapp-1-A0TEST-0-0")
    link = SlowAckLink(bot)
    try:
        handler.handle(link, request)  # type: ignore[arg-type]
    finally:
        handler.close()  # type: ignore[no-untyped-call]
    assert [ack.envelope_id for ack in link.acks] == ["e-1"]
    assert "Planning" in json.dumps(link.acks[0].payload)
    assert link.plans_meanwhile == []
    assert wait_for("the plan once the ack is out", bot.plan_messages)


def test_a_bad_version_gets_one_sentence_for_the_requester_only(bot: SlackBot):
    bot.command("myst 3.9.1;rm")
    found = wait_for("the refusal", lambda: bot.ephemeral_texts(ALICE))
    assert "is not a version" in found[0]
    assert bot.plan_messages() == []


def test_a_non_approver_is_told_and_ignored(bot: SlackBot, world: MemoryWorld):
    plan_ts, _ = _request(bot)
    bot.react("U0DAVE001", "white_check_mark", plan_ts)
    found = wait_for("the explanation", lambda: bot.ephemeral_texts("U0DAVE001"))
    assert "not an approver" in found[0]
    time.sleep(0.2)
    assert _run_state(world) is RunState.AWAITING_APPROVAL


def test_the_requester_cannot_approve_their_own_run(slack_bot_factory):
    world = myst_world(Policy(approvers=(ALICE, BOB), approvals_required=1))
    bot = _bot(slack_bot_factory, world)
    plan_ts, _ = _request(bot)
    bot.react(ALICE, "white_check_mark", plan_ts)
    found = wait_for(
        "the refusal", lambda: [t for t in bot.ephemeral_texts(ALICE) if "your own run" in t]
    )
    assert found
    assert _run_state(world) is RunState.AWAITING_APPROVAL


def test_retries_and_duplicates_change_nothing(slack_bot_factory):
    world = myst_world(Policy(approvers=(BOB, CAROL), approvals_required=2))
    bot = _bot(slack_bot_factory, world)
    plan_ts, _ = _request(bot)
    for retry in (None, 1, 2):
        assert (
            bot.react(BOB, "white_check_mark", plan_ts, event_id="Ev0DUP", retry_num=retry) == 200
        )
    wait_for("the vote", lambda: world.store.votes(1))
    time.sleep(0.3)
    assert len(world.store.votes(1)) == 1
    notices = [m for m in bot.thread(plan_ts) if "approved run #1" in m.text]
    assert len(notices) == 1
    assert _run_state(world) is RunState.AWAITING_APPROVAL  # 1 of 2


def test_a_removed_reaction_withdraws_the_vote(slack_bot_factory):
    world = myst_world(Policy(approvers=(BOB, CAROL), approvals_required=2))
    bot = _bot(slack_bot_factory, world)
    plan_ts, approval_ts = _request(bot)
    bot.react(BOB, "white_check_mark", plan_ts)
    wait_for("the vote", lambda: world.store.votes(1))
    bot.react(BOB, "white_check_mark", plan_ts, removed=True)
    wait_for("the withdrawal", lambda: [m for m in bot.thread(plan_ts) if "withdrew" in m.text])
    assert world.store.votes(1) == []
    wait_for(
        "the approval message to count no vote",
        lambda: "0 of 2" in text_of(bot.emulator.message(CHANNEL, approval_ts)),
    )


def test_a_rejection_ends_the_request(bot: SlackBot, world: MemoryWorld):
    plan_ts, approval_ts = _request(bot)
    bot.react(CAROL, "x", plan_ts)
    wait_for("the rejection", lambda: _run_state(world) is RunState.REJECTED)
    wait_for(
        "the closed request",
        lambda: APPROVE_ACTION not in text_of(bot.emulator.message(CHANNEL, approval_ts)),
    )
    assert world.shell.commands == []


def test_the_approve_button_counts_and_is_bound_to_the_plan(bot: SlackBot, world: MemoryWorld):
    _, approval_ts = _request(bot)
    run = world.store.runs(limit=1)[0]
    bot.click(BOB, APPROVE_ACTION, f"{run.id}:0000000000000000", approval_ts)
    found = wait_for("the refusal", lambda: bot.ephemeral_texts(BOB))
    assert "another plan" in found[0]
    bot.click(BOB, APPROVE_ACTION, f"{run.id}:{run.plan.digest}", approval_ts)
    wait_for("the run to finish", lambda: _run_state(world) is RunState.SUCCEEDED)


def test_an_unanswered_request_expires(bot: SlackBot, world: MemoryWorld):
    plan_ts, _ = _request(bot)
    world.clock.advance(ONE_APPROVER.approval_expiry_minutes * 60 + 1)
    bot.bot.conversation.expire_due()
    assert _run_state(world) is RunState.EXPIRED
    assert any("expired" in m.text for m in bot.thread(plan_ts))
    bot.react(BOB, "white_check_mark", plan_ts)
    found = wait_for("the late vote's answer", lambda: bot.ephemeral_texts(BOB))
    assert "expired" in found[0]


def test_bad_signatures_and_stale_requests_are_refused(bot: SlackBot):
    from tests.slackemu import requests as slack

    body = slack.slash_command("help", ALICE, CHANNEL)
    assert bot.sender.send(*body, bad_signature=True)[0] == 401
    assert bot.sender.send(*body, timestamp=int(time.time()) - 600)[0] == 401
    assert bot.emulator.ephemerals() == []


def test_user_groups_are_resolved_through_the_web_api(slack_bot_factory):
    world = myst_world(Policy(approver_groups=("S0APPROVE",), approvals_required=1))
    bot = _bot(slack_bot_factory, world)
    plan_ts, _ = _request(bot)
    bot.react(BOB, "white_check_mark", plan_ts)  # bob is in S0APPROVE
    wait_for("the run to finish", lambda: _run_state(world) is RunState.SUCCEEDED)
    assert bot.emulator.calls("usergroups.users.list")


def test_help_status_and_history(bot: SlackBot):
    bot.command("help")
    bot.command("status")
    bot.command("history myst")
    texts = wait_for(
        "three answers", lambda: len(bot.ephemeral_texts(ALICE)) >= 3 and bot.ephemeral_texts(ALICE)
    )
    joined = "\n".join(texts)
    assert "/upgrade" in joined
    assert "myst-studio" in joined


def test_lock_stops_new_upgrades_until_unlocked(bot: SlackBot):
    bot.command("lock prod incident 4711 in progress")
    wait_for(
        "the lock notice", lambda: [m for m in bot.emulator.messages(CHANNEL) if "locked" in m.text]
    )
    bot.command("myst 3.9.1")
    refusal = wait_for(
        "the refusal", lambda: [t for t in bot.ephemeral_texts(ALICE) if "incident 4711" in t]
    )
    assert refusal
    bot.command("unlock prod")
    wait_for(
        "the unlock notice",
        lambda: [m for m in bot.emulator.messages(CHANNEL) if "unlocked" in m.text],
    )
    _request(bot)


def test_cancel_by_the_requester(bot: SlackBot, world: MemoryWorld):
    plan_ts, _ = _request(bot)
    bot.command("cancel 1")
    wait_for("the cancel notice", lambda: [m for m in bot.thread(plan_ts) if "cancelled" in m.text])
    assert _run_state(world) is RunState.CANCELLED


def test_long_output_goes_up_as_a_file(bot: SlackBot, world: MemoryWorld):
    world.shell.on(r"/bin/pull\.sh", stdout="".join(f"layer {i} pulled\n" for i in range(500)))
    plan_ts, _ = _request(bot)
    bot.react(BOB, "white_check_mark", plan_ts)
    upload = wait_for("the shared upload", lambda: [u for u in bot.emulator.uploads() if u.shared])[
        0
    ]
    assert b"layer 499 pulled" in upload.content
    assert upload.thread_ts == plan_ts


def test_rate_limits_are_waited_out(slack_bot_factory, world: MemoryWorld):
    bot = _bot(slack_bot_factory, world, rate_limits=True)
    bot.emulator.rate_limit_next("chat.update", times=2, retry_after=1)
    plan_ts, _ = _request(bot)
    bot.react(BOB, "white_check_mark", plan_ts)
    wait_for("the run to finish", lambda: _run_state(world) is RunState.SUCCEEDED)
    limited = [c for c in bot.emulator.calls("chat.update") if c.status == 429]
    assert limited
    assert bot.emulator.calls("chat.update")[-1].ok


def test_app_home_lists_runs(bot: SlackBot):
    from tests.slackemu import requests as slack

    _request(bot)
    bot.sender.send(*slack.app_home_opened(BOB, "Ev0HOME"))
    home = wait_for("the home tab", lambda: bot.emulator.home(BOB))
    assert home["type"] == "home"
    assert "#1" in json.dumps(home)


def test_a_gate_asks_in_the_thread_and_the_button_lets_the_run_go_on(slack_bot_factory):
    from bot.slack.blocks_report import ROLLBACK_ACTION
    from tests.unit.memory_world import phased_world

    world = phased_world(ONE_APPROVER)
    bot = _bot(slack_bot_factory, world)
    plan_ts, _ = _request(bot, "myst 3.9.1 strategy=phased")
    bot.react(BOB, "white_check_mark", plan_ts)
    gate = wait_for(
        "the gate request",
        lambda: [m for m in bot.thread(plan_ts) if "waits at step" in text_of(m)],
    )[-1]
    run = world.store.runs(limit=1)[0]
    assert run.state is RunState.WAITING
    text = text_of(gate)
    assert "Evidence so far" in text
    assert "nonprod_console_version is 3.9.1" in text
    value = f"{run.id}:{run.plan.digest}.go-to-production"
    assert value in text  # the gate's buttons are bound to the plan and the gate
    bot.click(BOB, APPROVE_ACTION, value, gate.ts)
    summary = wait_for(
        "the summary", lambda: [m for m in bot.thread(plan_ts) if m.reply_broadcast]
    )[-1]
    assert _run_state(world) is RunState.SUCCEEDED
    assert ROLLBACK_ACTION in text_of(summary)  # a rollback can be asked for from here
    bot.click(ALICE, ROLLBACK_ACTION, str(run.id), summary.ts)
    rollback_plan = wait_for(
        "the rollback plan",
        lambda: [m for m in bot.emulator.messages(CHANNEL) if "Rollback plan" in text_of(m)],
    )
    assert "3.9.1 → 3.9.0.3" in text_of(rollback_plan[0])
