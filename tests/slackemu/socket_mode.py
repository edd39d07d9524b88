"""Socket Mode, emulated: the WebSocket server whose URLs `apps.connections.open` hands out.

Slack's side of https://docs.slack.dev/apis/events-api/using-socket-mode: a connected app gets
`hello`, then envelopes (`slash_commands`, `events_api`, `interactive`; `envelope_id`, `payload`,
`accepts_response_payload`) to acknowledge with `{"envelope_id", "payload"?}`; `disconnect` asks it
to connect anew. The WebSocket is our own RFC 6455 server on 127.0.0.1 (handshake, text frames,
ping/pong, close; unmasked client frames are refused, section 5.1) at `ws://` URLs, which
slack_sdk's built-in client reaches over plain TCP as it does every port but 443."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import socket
import struct
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.slackemu import requests
from tests.slackemu.ratelimit import DEFAULT_RULES, TIER_3, Rule
from tests.slackemu.workspace import APP_ID

# The emulator's default limits with this one's: "Tier 3: 50+ per minute" on its current page.
RULES: Mapping[str, Rule] = {**DEFAULT_RULES, "apps.connections.open": TIER_3}
LINK_PATH = "/link/"
DEBUG_INFO = {"host": "applink-emulated", "build_number": 1, "approximate_connection_time": 18060}
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
_MAX_FRAME = 1 << 20


class _Closed(Exception):
    """The client went away, or broke the protocol: then `args[0]` is the close code to send."""


@dataclass(frozen=True, kw_only=True)
class Ack:
    """The app's acknowledgement of one envelope; `latency` is seconds since it was sent."""

    envelope_id: str
    payload: dict[str, Any] | None
    latency: float


@dataclass(eq=False)
class Link:
    """One WebSocket connection; `retired` once sent `disconnect`, `closed` once gone."""

    sock: socket.socket
    retired: bool = False
    closed: threading.Event = field(default_factory=threading.Event)
    received: list[Any] = field(default_factory=list)
    _buffer: bytes = b""
    _send_lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, opcode: int, data: bytes) -> None:
        """One final, unmasked frame, as servers send them (section 5.2)."""
        size = len(data)
        length = struct.pack("!BH", 126, size) if size < 1 << 16 else struct.pack("!BQ", 127, size)
        header = bytes([0x80 | opcode]) + (bytes([size]) if size < 126 else length)
        with self._send_lock:
            self.sock.sendall(header + data)

    def send_json(self, message: Mapping[str, Any]) -> None:
        self.send(TEXT, json.dumps(message).encode())

    def read(self, size: int | None) -> bytes:
        """`size` bytes; with None, the HTTP head up to its blank line."""
        while (b"\r\n\r\n" not in self._buffer) if size is None else len(self._buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk or len(self._buffer) > _MAX_FRAME:
                raise _Closed(None)
            self._buffer += chunk
        if size is None:
            size = self._buffer.index(b"\r\n\r\n") + 4
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def read_frame(self) -> tuple[bool, int, bytes]:
        """(fin, opcode, unmasked payload) of the client's next frame (section 5.2)."""
        first, second = self.read(2)
        fin, opcode, size = bool(first & 0x80), first & 0x0F, second & 0x7F
        if first & 0x70 or not second & 0x80:  # no extension was agreed; clients must mask
            raise _Closed(1002)
        if size > 125:
            wide = size == 127
            (size,) = struct.unpack("!Q" if wide else "!H", self.read(8 if wide else 2))
        if opcode >= CLOSE and (size > 125 or not fin):
            raise _Closed(1002)
        if size > _MAX_FRAME:
            raise _Closed(1009)
        key, data = self.read(4), self.read(size)
        mask = int.from_bytes((key * (size // 4 + 1))[:size], "big")
        return fin, opcode, (int.from_bytes(data, "big") ^ mask).to_bytes(size, "big")


def _http(status: str, headers: Mapping[str, str] | None = None, body: str = "") -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    if not status.startswith("101"):
        lines += [f"Content-Length: {len(body)}", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


class SocketModeServer:
    """Slack's Socket Mode host: hands out URLs, pushes envelopes to `link` (the newest connection
    not told to `disconnect`) and records the acknowledgements. Listens from the first URL on."""

    def __init__(self) -> None:
        self._listener: socket.socket | None = None
        self._tickets: set[str] = set()
        self._links: list[Link] = []
        self._sent: dict[str, float] = {}
        self._acks: dict[str, Ack] = {}
        self._changed = threading.Condition()

    def open_url(self) -> str:
        """A URL whose ticket opens one connection: what `apps.connections.open` answers."""
        ticket = secrets.token_urlsafe(16)
        with self._changed:
            if self._listener is None:
                self._listener = socket.create_server(("127.0.0.1", 0))
                self._listener.settimeout(0.05)  # so the accept loop sees stop() at once
                threading.Thread(target=self._accept, name="slackemu-ws", daemon=True).start()
            self._tickets.add(ticket)
            port = self._listener.getsockname()[1]
        return f"ws://127.0.0.1:{port}{LINK_PATH}?ticket={ticket}&app_id={APP_ID}"

    def stop(self) -> None:
        with self._changed:
            listener, self._listener, links = self._listener, None, list(self._links)
        if listener is not None:
            listener.close()
        for link in links:
            self._close(link)

    @property
    def link(self) -> Link | None:
        with self._changed:
            live = [k for k in self._links if not k.retired and not k.closed.is_set()]
            return live[-1] if live else None

    def connected(self, timeout: float = 10.0) -> Link:
        """Wait until an app is connected (and has had `hello`); its link."""
        with self._changed:
            link = self._changed.wait_for(lambda: self.link, timeout)
        if link is None:
            raise TimeoutError(f"no app connected over Socket Mode within {timeout:g}s")
        return link

    def ack(self, envelope_id: str, timeout: float = 3.0) -> Ack:
        """Wait for the app to acknowledge `envelope_id` (Slack allows it 3 seconds)."""
        with self._changed:
            ack = self._changed.wait_for(lambda: self._acks.get(envelope_id), timeout)
        if ack is None:
            raise TimeoutError(f"envelope {envelope_id} not acknowledged within {timeout:g}s")
        return ack

    def send_envelope(self, kind: str, payload: dict[str, Any], **extra: Any) -> str:
        """Push one envelope over `link`; returns its `envelope_id` (a UUID, as Slack's are)."""
        link = self.connected(timeout=0)
        envelope_id = str(uuid.uuid4())
        with self._changed:
            self._sent[envelope_id] = time.monotonic()
        link.send_json({"envelope_id": envelope_id, "type": kind, "payload": payload, **extra})
        return envelope_id

    def send_slash_command(
        self, text: str, user: str, channel: str, command: str = "/upgrade"
    ) -> str:
        """The fields Slack would post to a Request URL, as the JSON payload."""
        body, _ = requests.slash_command(text, user, channel, command)
        fields = dict(parse_qsl(body.decode(), keep_blank_values=True))
        return self.send_envelope("slash_commands", fields, accepts_response_payload=True)

    def send_event(self, event: Mapping[str, Any], *, event_id: str | None = None) -> str:
        """`event` in its `event_callback` wrapper, as a first delivery (`retry_attempt` 0)."""
        channel = event.get("channel") or dict(event.get("item") or {}).get("channel")
        event_id = event_id or f"Ev{time.monotonic_ns():X}"
        body, _ = requests._event_callback(event, event_id, channel)
        extra = {"accepts_response_payload": False, "retry_attempt": 0, "retry_reason": ""}
        return self.send_envelope("events_api", json.loads(body), **extra)

    def send_interactive(self, payload: dict[str, Any], *, response: bool = False) -> str:
        """An interaction payload such as `block_actions`; `response`: accepts a payload back."""
        return self.send_envelope("interactive", payload, accepts_response_payload=response)

    def disconnect(self, reason: str = "refresh_requested") -> Link:
        """Tell the current link to go; it stays open until the app closes it."""
        link = self.connected(timeout=0)
        with self._changed:
            link.retired = True
        link.send_json({"type": "disconnect", "reason": reason, "debug_info": DEBUG_INFO})
        return link

    def _accept(self) -> None:
        while (listener := self._listener) is not None:
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by stop()
            sock.settimeout(None)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _handshake(self, link: Link) -> tuple[str, str]:
        """Section 4.2: the status for the upgrade request, and its key (a ticket opens once)."""
        request, *lines = link.read(None).decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
        method, _, rest = request.partition(" ")
        target = urlsplit(rest.rpartition(" ")[0])
        ticket = dict(parse_qsl(target.query)).get("ticket", "")
        key = headers.get("sec-websocket-key", "")
        with self._changed:
            known = ticket in self._tickets
            self._tickets.discard(ticket)
        upgrade = (method, target.path, headers.get("upgrade", "").lower())
        connection = headers.get("connection", "").lower()
        asked = (*upgrade, len(base64.b64decode(key, validate=True)))
        if asked != ("GET", LINK_PATH, "websocket", 16) or "upgrade" not in connection:
            return "400 Bad Request", key
        if headers.get("sec-websocket-version") != "13":
            return "426 Upgrade Required", key
        return ("101 Switching Protocols" if known else "401 Unauthorized"), key

    def _serve(self, sock: socket.socket) -> None:
        link = Link(sock=sock)
        try:
            status, key = self._handshake(link)
        except (_Closed, OSError, ValueError):  # binascii.Error and UnicodeError are ValueErrors
            status, key = "400 Bad Request", ""
        if not status.startswith("101"):
            with contextlib.suppress(OSError):  # the version header is what 426 needs
                sock.sendall(_http(status, {"Sec-WebSocket-Version": "13"}, status[4:]))
            sock.close()
            return
        accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()  # noqa: S324
        upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Accept": accept}
        try:
            sock.sendall(_http(status, upgrade))
            with self._changed:  # hello goes first: envelopes wait for the link to be listed
                live = 1 + sum(not k.closed.is_set() for k in self._links)
                hello = {"type": "hello", "num_connections": live, "debug_info": DEBUG_INFO}
                link.send_json({**hello, "connection_info": {"app_id": APP_ID}})
                self._links.append(link)
                self._changed.notify_all()
            self._read(link)
        except (_Closed, ValueError) as error:  # ValueError: a text frame that is not UTF-8 JSON
            code = error.args[0] if isinstance(error, _Closed) else 1007
            if code is not None:
                with contextlib.suppress(OSError):
                    link.send(CLOSE, struct.pack("!H", code))
        except OSError:
            pass  # the client went away without a close frame, as slack_sdk's does
        self._close(link)

    def _read(self, link: Link) -> None:
        pieces: list[bytes] = []
        while True:
            fin, opcode, data = link.read_frame()
            if opcode == PING:
                link.send(PONG, data)
            elif opcode == CLOSE:  # answer with the client's code, then close (section 5.5.1)
                link.send(CLOSE, data[:2])
                return
            elif (opcode == TEXT and not pieces) or (opcode == CONTINUATION and pieces):
                pieces.append(data)
                if fin:
                    self._receive(link, b"".join(pieces).decode())
                    pieces = []
            elif opcode != PONG:  # binary, a continuation of nothing, a reserved opcode
                raise _Closed(1003 if opcode == BINARY else 1002)

    def _receive(self, link: Link, text: str) -> None:
        message = json.loads(text)
        envelope_id = message.get("envelope_id") if isinstance(message, dict) else None
        with self._changed:
            link.received.append(message)
            if envelope_id in self._sent and envelope_id not in self._acks:
                latency = time.monotonic() - self._sent[envelope_id]
                ack = Ack(envelope_id=envelope_id, payload=message.get("payload"), latency=latency)
                self._acks[envelope_id] = ack
            self._changed.notify_all()

    def _close(self, link: Link) -> None:
        with contextlib.suppress(OSError):
            link.sock.shutdown(socket.SHUT_RDWR)
        link.sock.close()
        with self._changed:
            link.closed.set()
            self._changed.notify_all()
