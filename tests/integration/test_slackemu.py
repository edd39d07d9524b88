"""The Slack stand-ins are right: the Web API emulator answers slack_sdk like Slack and enforces
Slack's documented limits, and the signed requests pass (or fail) a real slack_bolt app."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from slack_bolt import App
from slack_bolt.request import BoltRequest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier

from tests.slackemu import requests as slack
from tests.slackemu.ratelimit import RateLimiter, Rule
from tests.slackemu.workspace import APP_ID, TEAM_ID
from tests.slackemu.wsgi import serve_bolt

if TYPE_CHECKING:
    from tests.slackemu.server import SlackEmulator

# The emulator's fixture, `slack_api`; imported only through here so pytest can rewrite its module.

CHANNEL = "C0UPGRADE"
ALICE, BOB = "U0ALICE01", "U0BOB0001"
SECRET = "emulated-signing-secret"
TS = re.compile(r"^\d{10}\.\d{6}$")


def section(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}, **extra}


def button(text: str = "Approve", value: str = "v", action_id: str = "approve") -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "value": value,
        "action_id": action_id,
    }


def refusal(call: Callable[[], object]) -> dict[str, Any]:
    with pytest.raises(SlackApiError) as caught:
        call()
    data = caught.value.response.data
    assert isinstance(data, dict)
    return data


# -- the Web API as slack_sdk sees it -------------------------------------------------------------


def test_posts_replies_and_updates_show_as_the_channel_now_reads(slack_api: SlackEmulator) -> None:
    client = slack_api.client()
    plan = client.chat_postMessage(channel=CHANNEL, text="Plan", blocks=[section("*Plan*")])
    assert plan["channel"] == CHANNEL
    assert TS.match(plan["ts"])
    assert plan["message"]["blocks"] == [section("*Plan*")]
    assert plan["message"]["bot_id"]
    reply = client.chat_postMessage(channel=CHANNEL, thread_ts=plan["ts"], text="Approvers: alice")
    loud = client.chat_postMessage(
        channel=CHANNEL, thread_ts=plan["ts"], text="Done", reply_broadcast=True
    )
    for n in (1, 2):
        edited = client.chat_update(channel=CHANNEL, ts=reply["ts"], text=f"Progress {n}/2")
        assert edited["text"] == f"Progress {n}/2"
        assert edited["ts"] == reply["ts"]
    assert reply["message"]["thread_ts"] == plan["ts"]

    (top,) = slack_api.messages(CHANNEL)
    assert top.ts == plan["ts"]
    assert [r.ts for r in top.replies] == [reply["ts"], loud["ts"]]
    progress, done = top.replies
    assert progress.text == "Progress 2/2"
    assert progress.edits == 2
    assert [v.text for v in progress.previous] == ["Approvers: alice", "Progress 1/2"]
    assert done.reply_broadcast
    assert done.thread_ts == plan["ts"]
    assert slack_api.threads(CHANNEL) == {plan["ts"]: list(top.replies)}


def test_timestamps_are_unique_and_increase(slack_api: SlackEmulator) -> None:
    client = slack_api.client()
    stamps = [client.chat_postMessage(channel=f"C0CH{n}", text="x")["ts"] for n in range(20)]
    assert all(TS.match(ts) for ts in stamps)
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == len(stamps)


def test_form_and_json_bodies_are_both_understood(slack_api: SlackEmulator) -> None:
    blocks = json.dumps([section("from a form")])
    form = f"channel={CHANNEL}&text=hi&blocks={urllib.parse.quote(blocks)}".encode()
    for body, kind in (
        (form, "application/x-www-form-urlencoded"),
        (json.dumps({"channel": CHANNEL, "text": "hi"}).encode(), "application/json"),
    ):
        request = urllib.request.Request(  # noqa: S310
            slack_api.url + "chat.postMessage",
            data=body,
            headers={"Content-Type": kind, "Authorization": f"Bearer {slack_api.token}"},
        )
        with urllib.request.urlopen(request) as answer:  # noqa: S310
            assert json.load(answer)["ok"] is True
    assert [m.blocks for m in slack_api.messages(CHANNEL)] == [[section("from a form")], []]
    form_call, json_call = slack_api.calls("chat.postMessage")
    assert form_call.args == {"channel": CHANNEL, "text": "hi", "blocks": [section("from a form")]}
    assert json_call.args == {"channel": CHANNEL, "text": "hi"}
    assert form_call.response["ok"] is True


def test_a_missing_or_unknown_token_is_refused(slack_api: SlackEmulator) -> None:
    assert refusal(lambda: WebClient(base_url=slack_api.url).auth_test())["error"] == "not_authed"
    wrong = WebClient(base_url=slack_api.url, token="xoxb-wrong")
    assert (
        refusal(lambda: wrong.chat_postMessage(channel=CHANNEL, text="x"))["error"]
        == "invalid_auth"
    )
    assert slack_api.messages(CHANNEL) == []
    assert slack_api.client().auth_test()["user_id"] == "U0BOT0001"


def test_message_errors_are_slacks(slack_api: SlackEmulator) -> None:
    client = slack_api.client()
    with pytest.warns(UserWarning, match="top-level `text` argument is missing"):
        assert refusal(lambda: client.chat_postMessage(channel=CHANNEL))["error"] == "no_text"
    assert refusal(lambda: client.chat_postMessage(channel="#nope", text="x"))["error"] == (
        "channel_not_found"
    )
    assert (
        refusal(lambda: client.chat_update(channel=CHANNEL, ts="1.000001", text="x"))["error"]
        == "message_not_found"
    )


def test_files_go_up_through_the_external_flow(slack_api: SlackEmulator) -> None:
    client = slack_api.client()
    parent = client.chat_postMessage(channel=CHANNEL, text="Run 7")
    log = "2026-01-01 ERROR boom\n" * 100
    done = client.files_upload_v2(
        channel=CHANNEL,
        thread_ts=parent["ts"],
        content=log,
        filename="run-7.log",
        title="Run 7 log",
        initial_comment="Full log",
    )
    (upload,) = slack_api.uploads()
    assert done["file"]["id"] == upload.id
    assert upload.shared
    assert upload.content == log.encode()
    assert upload.length == len(log)
    assert (upload.title, upload.channel, upload.thread_ts) == ("Run 7 log", CHANNEL, parent["ts"])
    (share,) = slack_api.messages(CHANNEL)[0].replies
    assert share.files == (upload.id,)
    assert share.text == "Full log"
    assert [c.method for c in slack_api.calls()][1:] == [
        "files.getUploadURLExternal",
        "files.completeUploadExternal",
    ]


def test_completing_an_upload_whose_bytes_never_arrived_fails(slack_api: SlackEmulator) -> None:
    client = slack_api.client()
    ticket = client.files_getUploadURLExternal(filename="a.log", length=5)
    assert ticket["upload_url"].startswith(slack_api.origin)
    wrong = urllib.request.Request(ticket["upload_url"], data=b"1234", method="POST")  # noqa: S310
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(wrong)  # noqa: S310
    assert refused.value.code == 400
    files = [{"id": ticket["file_id"], "title": "a"}]
    complete = client.files_completeUploadExternal
    assert refusal(lambda: complete(files=files, channel_id=CHANNEL))["error"] == "file_not_found"
    assert refusal(lambda: client.files_getUploadURLExternal(filename="b", length=0))["error"] == (
        "missing_argument"
    )


def test_bytes_may_also_go_up_multipart_encoded(slack_api: SlackEmulator) -> None:
    client = slack_api.client()
    ticket = client.files_getUploadURLExternal(filename="plan.txt", length=4)
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="plan.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\nplan\r\n--XyZ--\r\n"
    )
    kind = {"Content-Type": "multipart/form-data; boundary=XyZ"}
    upload = urllib.request.Request(ticket["upload_url"], data=body, headers=kind)  # noqa: S310
    with urllib.request.urlopen(upload) as answer:  # noqa: S310
        assert answer.status == 200
    client.files_completeUploadExternal(files=[{"id": ticket["file_id"]}], channel_id=CHANNEL)
    assert [u.content for u in slack_api.uploads()] == [b"plan"]


def test_the_retired_files_upload_is_refused(slack_api: SlackEmulator) -> None:
    legacy = slack_api.client().files_upload
    with pytest.warns(UserWarning, match="files_upload_v2"):
        answer = refusal(lambda: legacy(channels=CHANNEL, content="x", filename="x.txt"))
    assert answer["error"] == "method_deprecated"
    assert slack_api.uploads() == []
    assert slack_api.messages(CHANNEL) == []


def test_people_groups_ephemerals_and_reactions(slack_api: SlackEmulator) -> None:
    client = slack_api.client()
    alice = client.users_info(user=ALICE)["user"]
    assert alice["tz"] == "Europe/Berlin"
    assert alice["tz_offset"] in (3600, 7200)
    assert client.users_info(user="U0CAROL01")["user"]["tz_offset"] == 19800
    assert refusal(lambda: client.users_info(user="U0NOBODY"))["error"] == "user_not_found"
    assert client.usergroups_users_list(usergroup="S0APPROVE")["users"] == [ALICE, BOB]
    assert refusal(lambda: client.usergroups_users_list(usergroup="S0NONE"))["error"] == (
        "no_such_subteam"
    )
    client.chat_postEphemeral(channel=CHANNEL, user=BOB, text="You are not an approver")
    assert [e.text for e in slack_api.ephemerals(BOB)] == ["You are not an approver"]
    assert slack_api.ephemerals(ALICE) == []
    ts = client.chat_postMessage(channel=CHANNEL, text="Plan")["ts"]
    client.reactions_add(channel=CHANNEL, timestamp=ts, name="eyes")
    assert (
        refusal(lambda: client.reactions_add(channel=CHANNEL, timestamp=ts, name="eyes"))["error"]
        == "already_reacted"
    )
    assert (
        refusal(lambda: client.reactions_add(channel=CHANNEL, timestamp=ts, name=":x:"))["error"]
        == "invalid_name"
    )
    assert slack_api.message(CHANNEL, ts).reactions == {"eyes": ("U0BOT0001",)}
    client.reactions_remove(channel=CHANNEL, timestamp=ts, name="eyes")
    assert slack_api.message(CHANNEL, ts).reactions == {}


def test_deleting_and_describing(slack_api: SlackEmulator) -> None:
    client = slack_api.client()
    ts = client.chat_postMessage(channel=CHANNEL, text="oops")["ts"]
    assert client.chat_delete(channel=CHANNEL, ts=ts)["ts"] == ts
    assert slack_api.messages(CHANNEL) == []
    assert (
        refusal(lambda: client.chat_delete(channel=CHANNEL, ts=ts))["error"] == "message_not_found"
    )
    info = client.conversations_info(channel=CHANNEL)["channel"]
    assert info["id"] == CHANNEL
    assert info["is_channel"] is True


def test_the_home_tab_is_published_per_user(slack_api: SlackEmulator) -> None:
    client = slack_api.client()
    first = client.views_publish(user_id=ALICE, view={"type": "home", "blocks": [section("a")]})
    assert first["view"]["type"] == "home"
    assert slack_api.home(ALICE) == first["view"]
    assert first["view"]["blocks"] == [section("a")]
    assert slack_api.home(BOB) is None
    stale = {"type": "home", "blocks": []}
    assert (
        refusal(lambda: client.views_publish(user_id=ALICE, view=stale, hash="1.stale"))["error"]
        == "hash_conflict"
    )
    modal = {"type": "modal", "blocks": []}
    assert refusal(lambda: client.views_publish(user_id=ALICE, view=modal))["error"] == (
        "invalid_arguments"
    )
    client.views_publish(user_id=ALICE, view={"type": "home", "blocks": [section("b")] * 100})
    too_many = {"type": "home", "blocks": [section("b")] * 101}
    answer = refusal(lambda: client.views_publish(user_id=ALICE, view=too_many))
    assert answer["error"] == "invalid_arguments"
    assert answer["response_metadata"]["messages"] == [
        "[ERROR] no more than 100 items allowed [json-pointer:/view/blocks]"
    ]


# -- Slack's documented limits --------------------------------------------------------------------


def context(n: int) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * n}


def actions(*elements: dict[str, Any]) -> dict[str, Any]:
    return {"type": "actions", "elements": list(elements)}


def header(text: str, kind: str = "plain_text") -> dict[str, Any]:
    return {"type": "header", "text": {"type": kind, "text": text}}


def fields(n: int, size: int = 1) -> dict[str, Any]:
    return {"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * size}] * n}


BUTTON = "/blocks/0/elements/0"


Blocks = Callable[[int], list[Any]]

# (what, blocks holding n of it, Slack's maximum n, where it is, "items" or "characters")
BOUNDS: list[tuple[str, Blocks, int, str, str]] = [
    ("blocks", lambda n: [section("b")] * n, 50, "/blocks", "items"),
    ("section text", lambda n: [section("t" * n)], 3000, "/blocks/0/text/text", "characters"),
    ("section fields", lambda n: [fields(n)], 10, "/blocks/0/fields", "items"),
    ("field text", lambda n: [fields(1, n)], 2000, "/blocks/0/fields/0/text", "characters"),
    ("header text", lambda n: [header("h" * n)], 150, "/blocks/0/text/text", "characters"),
    ("context elements", lambda n: [context(n)], 10, "/blocks/0/elements", "items"),
    ("actions elements", lambda n: [actions(*[button()] * n)], 25, "/blocks/0/elements", "items"),
    ("button text", lambda n: [actions(button("b" * n))], 75, BUTTON + "/text/text", "characters"),
    (
        "button value",
        lambda n: [actions(button(value="v" * n))],
        2000,
        BUTTON + "/value",
        "characters",
    ),
    (
        "action_id",
        lambda n: [actions(button(action_id="a" * n))],
        255,
        BUTTON + "/action_id",
        "characters",
    ),
    (
        "block_id",
        lambda n: [section("s", block_id="b" * n)],
        255,
        "/blocks/0/block_id",
        "characters",
    ),
    (
        "markdown text",
        lambda n: [{"type": "markdown", "text": "m" * n}],
        12000,
        "/blocks/0/text",
        "characters",
    ),
]
SCHEMA = "failed to match all allowed schemas [json-pointer:/blocks/0{}]"
# (what, an accepted block, a refused one, Slack's complaint)
SHAPES: list[tuple[str, dict[str, Any], Any, str]] = [
    (
        "empty text",
        section("t"),
        section(""),
        "must be more than 0 characters [json-pointer:/blocks/0/text/text]",
    ),
    ("header is plain_text", header("h"), header("h", "mrkdwn"), SCHEMA.format("/text")),
    (
        "text object type",
        section("s"),
        {"type": "section", "text": {"type": "md", "text": "s"}},
        SCHEMA.format("/text"),
    ),
    (
        "known block type",
        {"type": "divider"},
        {"type": "sections"},
        "unsupported type: sections [json-pointer:/blocks/0/type]",
    ),
    ("blocks are objects", section("s"), "section", SCHEMA.format("")),
]
CASES = [
    pytest.param(
        build(n),
        build(n + 1),
        (
            f"no more than {n} items allowed"
            if unit == "items"
            else f"must be less than {n + 1} characters"
        )
        + f" [json-pointer:{where}]",
        id=what,
    )
    for what, build, n, where, unit in BOUNDS
] + [pytest.param([good], [bad], error, id=what) for what, good, bad, error in SHAPES]


@pytest.mark.parametrize(("allowed", "refused", "error"), CASES)
@pytest.mark.parametrize("method", ["chat.postMessage", "chat.update", "chat.postEphemeral"])
def test_each_block_kit_limit_is_enforced_like_slack(
    slack_api: SlackEmulator, allowed: list[Any], refused: list[Any], error: str, method: str
) -> None:
    client = slack_api.client()
    target = client.chat_postMessage(channel=CHANNEL, text="target")["ts"]
    args = {"channel": CHANNEL, "text": "fallback"}
    args |= {"ts": target} if method == "chat.update" else {}
    args |= {"user": ALICE} if method == "chat.postEphemeral" else {}
    assert client.api_call(method, json={**args, "blocks": allowed})["ok"] is True
    answer = refusal(lambda: client.api_call(method, json={**args, "blocks": refused}))
    assert answer["error"] == "invalid_blocks"
    assert error in answer["errors"]
    assert f"[ERROR] {error}" in answer["response_metadata"]["messages"]


@pytest.mark.parametrize("blocks", ["not json", '{"type": "section"}'])
def test_blocks_that_are_not_a_json_array_are_a_format_error(
    slack_api: SlackEmulator, blocks: str
) -> None:
    # As a form field, the way slack_sdk sends `blocks` for methods it posts form-encoded.
    form = {"channel": CHANNEL, "text": "x", "blocks": blocks}
    answer = refusal(lambda: slack_api.client().api_call("chat.postMessage", params=form))
    assert answer["error"] == "invalid_blocks_format"
    assert slack_api.messages(CHANNEL) == []


def test_message_text_is_cut_at_40000_characters_or_refused(slack_api: SlackEmulator) -> None:
    client = slack_api.client()
    exact = client.chat_postMessage(channel=CHANNEL, text="x" * 40_000)
    long = client.chat_postMessage(channel=CHANNEL, text="y" * 40_001)
    assert slack_api.message(CHANNEL, exact["ts"]).text == "x" * 40_000
    assert slack_api.message(CHANNEL, long["ts"]).text == "y" * 40_000
    slack_api.long_text = "refuse"
    refused = refusal(lambda: client.chat_postMessage(channel=CHANNEL, text="z" * 40_001))
    assert refused["error"] == "msg_too_long"
    assert len(slack_api.messages(CHANNEL)) == 2


# -- rate limits ----------------------------------------------------------------------------------


def test_a_forced_limit_answers_429_with_retry_after(slack_api: SlackEmulator) -> None:
    slack_api.rate_limit_next("chat.update", retry_after=7)
    client = slack_api.client()
    ts = client.chat_postMessage(channel=CHANNEL, text="progress 0")["ts"]
    with pytest.raises(SlackApiError) as limited:
        client.chat_update(channel=CHANNEL, ts=ts, text="progress 1")
    assert limited.value.response.status_code == 429
    assert limited.value.response.headers["Retry-After"] == "7"
    assert limited.value.response.data == {"ok": False, "error": "ratelimited"}
    assert slack_api.message(CHANNEL, ts).text == "progress 0"
    client.chat_update(channel=CHANNEL, ts=ts, text="progress 1")
    assert [c.status for c in slack_api.calls("chat.update")] == [429, 200]


def test_slack_sdk_retry_handler_honours_retry_after(slack_api: SlackEmulator) -> None:
    slack_api.rate_limit_next("chat.postMessage", retry_after=1)
    client = slack_api.client(retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)])
    started = time.monotonic()
    assert client.chat_postMessage(channel=CHANNEL, text="after a wait")["ok"] is True
    assert time.monotonic() - started >= 1.0
    assert [c.status for c in slack_api.calls("chat.postMessage")] == [429, 200]
    assert [m.text for m in slack_api.messages(CHANNEL)] == ["after a wait"]


def test_posting_is_limited_per_channel_after_a_short_burst(slack_api: SlackEmulator) -> None:
    client = slack_api.client()
    for n in range(5):
        client.chat_postMessage(channel=CHANNEL, text=f"step {n}")
    limited = refusal(lambda: client.chat_postMessage(channel=CHANNEL, text="step 5"))
    assert limited["error"] == "ratelimited"
    assert slack_api.calls("chat.postMessage")[-1].status == 429
    assert client.chat_postMessage(channel="C0OTHER", text="elsewhere")["ok"] is True
    assert len(slack_api.messages(CHANNEL)) == 5


def test_tiers_allow_their_rate_per_minute_and_refill() -> None:
    now = [0.0]
    limiter = RateLimiter(
        {"usergroups.users.list": Rule(per_minute=20, burst=20)}, clock=lambda: now[0]
    )
    assert [limiter.check("usergroups.users.list") for _ in range(20)] == [None] * 20
    assert limiter.check("usergroups.users.list") == 3  # one call every 60/20 seconds
    now[0] += 3.0
    assert limiter.check("usergroups.users.list") is None
    assert limiter.check("users.info") is None  # no rule: never limited
    limiter.enabled = False
    assert limiter.check("usergroups.users.list") is None
    limiter.force("usergroups.users.list", 2, retry_after=9)
    assert [limiter.check("usergroups.users.list") for _ in range(3)] == [9, 9, None]


def test_reset_forgets_everything_but_the_people(slack_api: SlackEmulator) -> None:
    client = slack_api.client()
    client.chat_postMessage(channel=CHANNEL, text="x")
    slack_api.rate_limit_next("users.info")
    slack_api.reset()
    assert slack_api.calls() == []
    assert slack_api.messages(CHANNEL) == []
    assert client.users_info(user=ALICE)["ok"] is True


# -- signed requests ------------------------------------------------------------------------------


# The worked example on Slack's "Verifying requests from Slack" page
# (https://docs.slack.dev/authentication/verifying-requests-from-slack): signing secret, request
# timestamp, the raw body of a slash command, and the `X-Slack-Signature` Slack computed for them.
DOCS_SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
DOCS_TIMESTAMP = "1531420618"
DOCS_BODY = (
    "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
    "&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
    "&command=%2Fwebhook-collect&text="
    "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554"
    "%2F96rGlfmibIGlgcZRskXaIFfN"
    "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
DOCS_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


def test_the_signer_reproduces_slacks_documented_example() -> None:
    body = DOCS_BODY.encode()
    assert slack.signature(DOCS_SIGNING_SECRET, DOCS_TIMESTAMP, body) == DOCS_SIGNATURE
    assert slack.signature(DOCS_SIGNING_SECRET, int(DOCS_TIMESTAMP), body) == DOCS_SIGNATURE
    assert slack.signature(DOCS_SIGNING_SECRET, DOCS_TIMESTAMP, body + b"&") != DOCS_SIGNATURE
    headers = slack.signed_headers(
        DOCS_SIGNING_SECRET, body, "application/x-www-form-urlencoded", timestamp=DOCS_TIMESTAMP
    )
    assert headers == {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": DOCS_TIMESTAMP,
        "X-Slack-Signature": DOCS_SIGNATURE,
    }


def test_slack_sdk_verifier_accepts_what_the_signer_signs() -> None:
    body, kind = slack.slash_command("myst 3.9.1", ALICE, CHANNEL)
    headers = slack.signed_headers(SECRET, body, kind)
    verifier = SignatureVerifier(SECRET)
    assert verifier.is_valid(
        body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
    )
    assert not verifier.is_valid(
        body + b" ", headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
    )


SLASH_FIELDS = [
    "token",
    "team_id",
    "team_domain",
    "channel_id",
    "channel_name",
    "user_id",
    "user_name",
    "command",
    "text",
    "api_app_id",
    "is_enterprise_install",
    "response_url",
    "trigger_id",
]
ENVELOPE_FIELDS = {
    "token",
    "team_id",
    "api_app_id",
    "event",
    "type",
    "event_id",
    "event_time",
    "authorizations",
    "is_ext_shared_channel",
    "event_context",
}


def form(body: bytes) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))


def test_slash_commands_carry_slacks_documented_fields() -> None:
    body, kind = slack.slash_command("myst 3.9.1 env=prod", ALICE, CHANNEL)
    sent = form(body)
    assert kind == "application/x-www-form-urlencoded"
    assert list(sent) == SLASH_FIELDS
    assert sent["text"] == "myst 3.9.1 env=prod"
    assert (sent["user_id"], sent["user_name"]) == (ALICE, "alice")
    assert (sent["channel_id"], sent["channel_name"]) == (CHANNEL, CHANNEL.lower())
    assert sent["command"] == "/upgrade"
    assert (sent["team_id"], sent["api_app_id"]) == (TEAM_ID, APP_ID)
    assert sent["is_enterprise_install"] == "false"
    assert sent["response_url"].startswith(f"https://hooks.slack.com/commands/{TEAM_ID}/")
    other = form(
        slack.slash_command("", BOB, CHANNEL, "/other", user_name="b", response_url="u")[0]
    )
    assert (other["command"], other["text"], other["user_name"], other["response_url"]) == (
        "/other",
        "",
        "b",
        "u",
    )
    assert other["trigger_id"] != sent["trigger_id"]


@pytest.mark.parametrize("kind", ["reaction_added", "reaction_removed"])
def test_reaction_events_come_in_the_event_callback_envelope(kind: str) -> None:
    build = slack.reaction_added if kind == "reaction_added" else slack.reaction_removed
    before = time.time()
    body, content_type = build(BOB, "white_check_mark", CHANNEL, "1700000000.000100", "Ev1")
    envelope = json.loads(body)
    assert content_type == "application/json"
    assert set(envelope) == ENVELOPE_FIELDS
    assert envelope["type"] == "event_callback"
    assert (envelope["team_id"], envelope["api_app_id"], envelope["event_id"]) == (
        TEAM_ID,
        APP_ID,
        "Ev1",
    )
    assert envelope["event_time"] >= int(before)
    assert envelope["authorizations"][0]["team_id"] == TEAM_ID
    assert envelope["is_ext_shared_channel"] is False
    assert isinstance(envelope["event_context"], str)
    event = envelope["event"]
    assert TS.match(event.pop("event_ts"))
    assert event == {
        "type": kind,
        "user": BOB,
        "reaction": "white_check_mark",
        "item_user": "U0BOT0001",
        "item": {"type": "message", "channel": CHANNEL, "ts": "1700000000.000100"},
    }
    mine = json.loads(build(BOB, "x", CHANNEL, "1.000001", "Ev2", item_user=ALICE)[0])
    assert mine["event"]["item_user"] == ALICE


def test_app_home_opened_and_url_verification() -> None:
    envelope = json.loads(slack.app_home_opened(ALICE, "Ev3")[0])
    assert set(envelope) == ENVELOPE_FIELDS
    event = envelope["event"]
    assert TS.match(event.pop("event_ts"))
    assert event == {
        "type": "app_home_opened",
        "user": ALICE,
        "channel": "D0ALICE01",
        "tab": "home",
    }
    elsewhere = json.loads(slack.app_home_opened(ALICE, "Ev4", channel="D0HOME001")[0])
    assert elsewhere["event"]["channel"] == "D0HOME001"
    body, kind = slack.url_verification("challenge-1")
    assert kind == "application/json"
    assert set(json.loads(body)) == {"token", "challenge", "type"}
    assert json.loads(body)["type"] == "url_verification"


def test_block_actions_carry_the_clicked_message_and_action() -> None:
    body, kind = slack.block_action(ALICE, "approve", "run-7", CHANNEL, "1700000000.000200")
    assert kind == "application/x-www-form-urlencoded"
    assert list(form(body)) == ["payload"]
    payload = json.loads(form(body)["payload"])
    assert payload["type"] == "block_actions"
    assert payload["user"] == {
        "id": ALICE,
        "username": "alice",
        "name": "alice",
        "team_id": TEAM_ID,
    }
    assert (payload["api_app_id"], payload["team"]["id"]) == (APP_ID, TEAM_ID)
    assert payload["container"] == {
        "type": "message",
        "message_ts": "1700000000.000200",
        "channel_id": CHANNEL,
        "is_ephemeral": False,
    }
    assert payload["channel"]["id"] == CHANNEL
    assert payload["response_url"].startswith(f"https://hooks.slack.com/actions/{TEAM_ID}/")
    assert payload["trigger_id"]
    (action,) = payload["actions"]
    assert TS.match(action.pop("action_ts"))
    (block,) = payload["message"]["blocks"]
    (shown,) = block["elements"]
    assert action == {
        "action_id": "approve",
        "block_id": block["block_id"],
        "text": shown["text"],
        "value": "run-7",
        "type": "button",
    }
    assert (shown["action_id"], shown["value"]) == ("approve", "run-7")
    assert payload["message"]["ts"] == "1700000000.000200"

    posted = {
        "type": "message",
        "text": "Plan",
        "ts": "1.000001",
        "blocks": [section("*Plan*", block_id="plan", accessory=button("Go", "v", "approve"))],
    }
    clicked = slack.block_action(BOB, "approve", "v", CHANNEL, "1700000000.000300", message=posted)
    payload = json.loads(form(clicked[0])["payload"])
    assert payload["message"] == {**posted, "ts": "1700000000.000300"}
    assert payload["actions"][0]["block_id"] == "plan"
    assert payload["actions"][0]["text"] == {"type": "plain_text", "text": "Go"}


# -- a real slack_bolt app ------------------------------------------------------------------------


@dataclass
class Bolt:
    url: str
    sender: slack.SlackSender
    seen: list[tuple[str, dict[str, Any], dict[str, Any]]]


@pytest.fixture
def bolt(slack_api: SlackEmulator) -> Iterator[Bolt]:
    """A minimal Bolt app in HTTP mode whose Web API client talks to the emulator."""
    seen: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    app = App(signing_secret=SECRET, client=slack_api.client(), process_before_response=True)

    def note(kind: str) -> Callable[..., None]:
        def listener(ack: Callable[[], None], body: dict[str, Any], request: BoltRequest) -> None:
            ack()
            seen.append((kind, body, {k: v[0] for k, v in request.headers.items()}))

        return listener

    @app.command("/upgrade")
    def upgrade(ack: Callable[[], None], command: dict[str, Any], client: WebClient) -> None:
        ack()
        seen.append(("command", command, {}))
        client.chat_postMessage(channel=command["channel_id"], text=f"Planning {command['text']}")

    for event in ("reaction_added", "reaction_removed", "app_home_opened"):
        app.event(event)(note(event))
    app.action("approve")(note("action"))
    with serve_bolt(app) as url:
        yield Bolt(url=url, sender=slack.SlackSender(url, SECRET), seen=seen)


REQUESTS: dict[str, tuple[Callable[[], slack.SlackRequest], str]] = {
    "slash command": (lambda: slack.slash_command("myst 3.9.1", ALICE, CHANNEL), "command"),
    "reaction added": (
        lambda: slack.reaction_added(
            ALICE, "white_check_mark", CHANNEL, "1700000000.000100", "Ev01"
        ),
        "reaction_added",
    ),
    "reaction removed": (
        lambda: slack.reaction_removed(
            ALICE, "white_check_mark", CHANNEL, "1700000000.000100", "Ev02"
        ),
        "reaction_removed",
    ),
    "block action": (
        lambda: slack.block_action(ALICE, "approve", "run-7", CHANNEL, "1700000000.000100"),
        "action",
    ),
    "app home opened": (lambda: slack.app_home_opened(ALICE, "Ev03"), "app_home_opened"),
}


@pytest.mark.parametrize(("build", "kind"), REQUESTS.values(), ids=REQUESTS.keys())
def test_bolt_accepts_every_signed_request(
    bolt: Bolt, build: Callable[[], slack.SlackRequest], kind: str
) -> None:
    status, _, _ = bolt.sender.send(*build())
    assert status == 200
    assert [seen[0] for seen in bolt.seen] == [kind]


def test_bolt_reached_the_emulator_for_auth_and_replies(
    bolt: Bolt, slack_api: SlackEmulator
) -> None:
    assert bolt.sender.send(*slack.slash_command("myst 3.9.1", ALICE, CHANNEL))[0] == 200
    assert slack_api.calls("auth.test")
    assert [m.text for m in slack_api.messages(CHANNEL)] == ["Planning myst 3.9.1"]


def test_bolt_echoes_the_url_verification_challenge(bolt: Bolt) -> None:
    status, _, body = bolt.sender.send(*slack.url_verification("challenge-123"))
    assert status == 200
    assert json.loads(body) == {"challenge": "challenge-123"}


def test_retries_carry_slacks_retry_headers(bolt: Bolt) -> None:
    request = slack.reaction_added(ALICE, "x", CHANNEL, "1700000000.000100", "Ev04")
    assert bolt.sender.send(*request, retry_num=2, retry_reason="http_error")[0] == 200
    (_, body, headers) = bolt.seen[0]
    assert body["event_id"] == "Ev04"
    assert headers["x-slack-retry-num"] == "2"
    assert headers["x-slack-retry-reason"] == "http_error"


@pytest.mark.parametrize(
    "tamper",
    [{"bad_signature": True}, {"timestamp": "stale"}],
    ids=["bad signature", "timestamp 301 s old"],
)
def test_bolt_refuses_bad_signatures_and_stale_timestamps(
    bolt: Bolt, tamper: dict[str, Any]
) -> None:
    if tamper.get("timestamp") == "stale":
        tamper = {"timestamp": int(time.time()) - 301}
    status, _, body = bolt.sender.send(*slack.slash_command("myst 3.9.1", ALICE, CHANNEL), **tamper)
    assert status == 401
    assert json.loads(body) == {"error": "invalid request"}
    assert bolt.seen == []
