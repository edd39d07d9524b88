"""`python -m bot serve` in Socket Mode, against the emulator's Socket Mode side.

The bot runs as deployed: a subprocess with `SLACK_APP_TOKEN` set, on a sandbox MyST Studio, its
Web API calls going to the emulator. First the emulator is checked where slack_sdk would not
notice a mistake: the token rules of `apps.connections.open`, and RFC 6455 details.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from slack_sdk.errors import SlackApiError

from adapters.sql_store import upgrade_schema
from bot.sandbox import create_sandbox
from tests.hostkit.services import free_port
from tests.hostkit.slackbot import text_of
from tests.slackemu.server import SlackEmulator
from tests.slackemu.workspace import APP_ID, BOT_USER_ID, Message, Person

ROOT = Path(__file__).resolve().parents[2]
CHANNEL = "C0UPGRADE"
ALICE, BOB = "alice", "bob"  # the sandbox policy's requester and approver, as Slack user ids
RFC_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
T = TypeVar("T")


# -- the emulator's Socket Mode side -------------------------------------------------------------


def test_apps_connections_open_wants_the_app_level_token_in_the_header(
    slack_api: SlackEmulator,
) -> None:
    url = slack_api.client().apps_connections_open(app_token=slack_api.app_token)["url"]
    assert url.startswith("ws://127.0.0.1:")
    assert "/link/?ticket=" in url
    assert f"app_id={APP_ID}" in url
    with pytest.raises(SlackApiError) as bot_token:
        slack_api.client().apps_connections_open(app_token=slack_api.token)
    assert bot_token.value.response["error"] == "not_allowed_token_type"
    with pytest.raises(SlackApiError) as app_token_elsewhere:
        slack_api.client(token=slack_api.app_token).auth_test()
    assert app_token_elsewhere.value.response["error"] == "not_allowed_token_type"
    posted = urllib.request.Request(  # noqa: S310 - the emulator, on 127.0.0.1
        slack_api.url + "apps.connections.open", data=f"token={slack_api.app_token}".encode()
    )
    with urllib.request.urlopen(posted, timeout=5) as answer:  # noqa: S310
        assert json.load(answer) == {"ok": False, "error": "not_authed"}


def _frame(opcode: int, data: bytes, *, masked: bool = True) -> bytes:
    key = secrets.token_bytes(4) if masked else b""
    body = bytes(b ^ key[i % 4] for i, b in enumerate(data)) if masked else data
    return bytes([0x80 | opcode, (0x80 if masked else 0) | len(data)]) + key + body


def _next_frame(sock: socket.socket) -> tuple[int, bytes]:
    first, second = sock.recv(2, socket.MSG_WAITALL)
    assert second & 0x80 == 0, "servers must not mask"
    size = second & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", sock.recv(2, socket.MSG_WAITALL))
    return first & 0x0F, sock.recv(size, socket.MSG_WAITALL) if size else b""


def _upgrade(url: str) -> tuple[socket.socket, str]:
    """Open `url` as a WebSocket client does; returns the socket and the response head."""
    target = urlsplit(url)
    sock = socket.create_connection((target.hostname, target.port), timeout=5)
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    sock.sendall(
        f"GET {target.path}?{target.query} HTTP/1.1\r\nHost: {target.hostname}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        assert byte, f"the server closed the connection after {head!r}"
        head += byte
    accept = base64.b64encode(hashlib.sha1((key + RFC_GUID).encode()).digest()).decode()  # noqa: S324
    text = head.decode()
    if text.startswith("HTTP/1.1 101"):
        assert f"Sec-WebSocket-Accept: {accept}" in text
    return sock, text


def test_the_websocket_speaks_rfc_6455(slack_api: SlackEmulator) -> None:
    url = slack_api.socket_mode.open_url()
    sock, head = _upgrade(url)
    assert head.startswith("HTTP/1.1 101")
    opcode, hello = _next_frame(sock)
    assert opcode == 0x1
    assert json.loads(hello)["type"] == "hello"
    assert json.loads(hello)["connection_info"] == {"app_id": APP_ID}
    sock.sendall(_frame(0x9, b"are you there"))
    assert _next_frame(sock) == (0xA, b"are you there")
    sock.sendall(_frame(0x8, struct.pack("!H", 1000)))
    assert _next_frame(sock) == (0x8, struct.pack("!H", 1000))
    assert sock.recv(1) == b""  # and the server closed the TCP connection
    sock.close()

    refused, head = _upgrade(url)
    refused.close()
    assert head.startswith("HTTP/1.1 401")  # a ticket opens one connection
    sock, head = _upgrade(slack_api.socket_mode.open_url())
    _next_frame(sock)  # hello
    sock.sendall(_frame(0x1, b'{"envelope_id": "x"}', masked=False))
    assert _next_frame(sock) == (0x8, struct.pack("!H", 1002))  # clients must mask
    sock.close()


# -- python -m bot serve ---------------------------------------------------------------------------


@dataclass
class Served:
    """The bot's process, its log (stdout and stderr) and the sandbox it upgrades."""

    process: subprocess.Popen[bytes]
    log: Path
    sandbox: Path

    def until(
        self,
        what: str,
        probe: Callable[[], T | None],
        timeout: float = 20.0,
        seen: Callable[[], object] = lambda: None,
    ) -> T:
        """Poll `probe` until it gives something truthy; fail early if the bot has exited.
        A failure names `what` and shows what there was instead (`seen`)."""
        deadline = time.monotonic() + timeout
        while not (found := probe()):
            if self.process.poll() is not None:
                raise AssertionError(f"the bot exited ({self.process.returncode}) before {what}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:g}s waiting for {what}: {seen()}")
            time.sleep(0.02)
        return found


@pytest.fixture
def served(slack_api: SlackEmulator, tmp_path: Path) -> Iterator[Served]:
    """`python -m bot serve` in Socket Mode on a fresh sandbox; stopped (and its log printed)."""
    config = create_sandbox(tmp_path / "sandbox")
    database = f"sqlite:///{tmp_path}/bot.db"
    upgrade_schema(database)
    for user in (ALICE, BOB):
        slack_api.add_person(
            Person(id=user, name=user, real_name=user.title(), tz="UTC", tz_label="UTC")
        )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    environment.update(
        SLACK_APP_TOKEN=slack_api.app_token,
        SLACK_BOT_TOKEN=slack_api.token,
        SLACK_SIGNING_SECRET="socket-mode-needs-no-signatures-but-the-bot-wants-one",
        SLACK_API_URL=slack_api.url,
        BOT_CONFIG=str(config),
        DATABASE_URL=database,
        DOCKER_HOST="unix:///nonexistent/docker.sock",  # the sandbox needs no Docker
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--port", str(free_port())],
            cwd=ROOT,
            env=environment,
            stdout=sink,
            stderr=sink,
        )
    try:
        yield Served(process=process, log=log, sandbox=tmp_path / "sandbox")
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        # Shown by pytest only when the test failed.
        print(f"--- python -m bot serve, exit {process.returncode} ---\n{log.read_text()}")


def _replies(slack_api: SlackEmulator, ts: str) -> list[Message]:
    return slack_api.threads(CHANNEL).get(ts, [])


def _reaction(user: str, name: str, ts: str) -> dict[str, Any]:
    """`reaction_added` as https://docs.slack.dev/reference/events/reaction_added shows it."""
    item = {"type": "message", "channel": CHANNEL, "ts": ts}
    return {
        "type": "reaction_added",
        "user": user,
        "reaction": name,
        "item_user": BOT_USER_ID,
        "item": item,
        "event_ts": f"{time.time():.6f}",
    }


def test_serve_holds_the_conversation_over_socket_mode(
    served: Served, slack_api: SlackEmulator
) -> None:
    slack_api.limiter.enabled = False  # pacing is the surface suite's subject; here it only slows
    socket_mode = slack_api.socket_mode
    first = served.until("the bot to connect over Socket Mode", lambda: socket_mode.link)

    asked = socket_mode.ack(socket_mode.send_slash_command("myst 3.9.1", ALICE, CHANNEL))
    print(f"/upgrade myst 3.9.1 acknowledged in {asked.latency * 1000:.0f} ms")
    assert asked.payload is not None
    assert "Planning" in asked.payload["text"]
    plan = served.until("the plan", lambda: slack_api.messages(CHANNEL))[0]
    assert "Upgrade plan: MyST Studio 3.9.0.3 → 3.9.1" in text_of(plan)
    request = served.until("the approval request", lambda: _replies(slack_api, plan.ts))[0]
    assert f"<@{BOB}>" in text_of(request)

    malformed = socket_mode.ack(socket_mode.send_slash_command("myst", ALICE, CHANNEL))
    print(f"/upgrade myst acknowledged in {malformed.latency * 1000:.0f} ms")
    assert malformed.payload is not None
    assert "An upgrade needs a product and a version" in malformed.payload["text"]

    approved = socket_mode.ack(socket_mode.send_event(_reaction(BOB, "white_check_mark", plan.ts)))
    assert approved.payload is None  # events are acknowledged with the envelope id alone
    summaries = served.until(
        "the summary",
        lambda: [m for m in _replies(slack_api, plan.ts) if m.reply_broadcast],
        timeout=30,
        seen=lambda: [m.text for m in _replies(slack_api, plan.ts)],
    )
    summary = text_of(summaries[-1])
    assert str(served.sandbox / "myst-studio" / "backup") in summary
    assert "console_version is 3.9.1" in summary

    assert socket_mode.disconnect() is first
    second = socket_mode.connected(timeout=10)
    assert second is not first
    # Sent as soon as the new link is open, as Slack may. slack_sdk's built-in client reads it only
    # once the old socket's blocking recv (3 s timeout) lets go, hence the generous timeout.
    again = socket_mode.send_slash_command("myst", ALICE, CHANNEL)
    answered = socket_mode.ack(again, timeout=10)
    print(f"sent as the new link opened: acknowledged in {answered.latency * 1000:.0f} ms")
    assert answered.payload is not None
    assert "needs a product" in answered.payload["text"]
    assert again in [m.get("envelope_id") for m in second.received]
    served.until("the old link to close", first.closed.is_set, timeout=5)
    assert [c.ok for c in slack_api.calls("apps.connections.open")] == [True, True]
