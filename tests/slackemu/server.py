"""A local Slack Web API: a real HTTP server that `slack_sdk.WebClient(base_url=...)` talks to.

It answers like Slack (status codes, JSON shapes, error codes, `Retry-After`), enforces Slack's
documented limits (see `blockkit` and `ratelimit`), and records every call so that tests can assert
on what the bot posted, updated, uploaded and published.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import pytest
from slack_sdk import WebClient

from tests.slackemu import methods, people, socket_mode, uploads, views, wire
from tests.slackemu.ratelimit import RateLimiter, Rule
from tests.slackemu.workspace import Ephemeral, Message, Person, Upload, Workspace

API_PATH = "/api/"
HANDLERS = {**methods.HANDLERS, **people.HANDLERS, **views.HANDLERS, **uploads.HANDLERS}


@dataclass(frozen=True, kw_only=True)
class Call:
    """One Web API call as the emulator received and answered it."""

    method: str
    args: dict[str, Any]
    status: int
    response: dict[str, Any]
    at: float

    @property
    def ok(self) -> bool:
        return bool(self.response.get("ok"))


class SlackEmulator:
    """Slack's Web API on 127.0.0.1; `url` is the `base_url` (`SLACK_API_URL`) to give a client."""

    def __init__(
        self,
        *,
        tokens: tuple[str, ...] = ("xoxb-test",),
        app_tokens: tuple[str, ...] = ("xapp-1-A0APP0001-test",),
        rules: Mapping[str, Rule] | None = None,
        long_text: Literal["truncate", "refuse"] = "truncate",
    ) -> None:
        self.tokens = tokens
        self.app_tokens = app_tokens
        self.limiter = RateLimiter(socket_mode.RULES if rules is None else rules)
        self.long_text = long_text
        self.workspace = Workspace()
        self._calls: list[Call] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        # Slack's Socket Mode side; it listens once `apps.connections.open` has handed out a URL.
        self.socket_mode = socket_mode.SocketModeServer()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> SlackEmulator:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        # A short poll keeps stop() quick: shutdown() waits for the loop's next poll.
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.02,), name="slackemu", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.socket_mode.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> SlackEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def origin(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        """Ends with "/" because WebClient posts to `<base_url><method>`."""
        return f"{self.origin}{API_PATH}"

    @property
    def token(self) -> str:
        return self.tokens[0]

    @property
    def app_token(self) -> str:
        """The app-level token (`xapp-...`, `SLACK_APP_TOKEN`) that opens Socket Mode links."""
        return self.app_tokens[0]

    def client(self, **kwargs: Any) -> WebClient:
        """A WebClient bound to this emulator (any WebClient argument may be overridden)."""
        kwargs.setdefault("token", self.token)
        return WebClient(base_url=self.url, **kwargs)

    # -- setting the scene -------------------------------------------------------------------

    def rate_limit_next(self, method: str, times: int = 1, *, retry_after: int = 1) -> None:
        """Answer the next `times` calls of `method` with 429 and this `Retry-After`."""
        self.limiter.force(method, times, retry_after=retry_after)

    def add_person(self, person: Person) -> None:
        with self.workspace.lock:
            self.workspace.people[person.id] = person

    def add_usergroup(self, group_id: str, user_ids: tuple[str, ...]) -> None:
        with self.workspace.lock:
            self.workspace.groups[group_id] = tuple(user_ids)

    def reset(self) -> None:
        """Forget calls, messages, files, views and rate-limit state; keep the seeded people."""
        with self.workspace.lock:
            self._calls.clear()
            self.workspace.reset()
        self.limiter.reset()

    # -- what happened -----------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[Call]:
        with self.workspace.lock:
            return [c for c in self._calls if method is None or c.method == method]

    def messages(self, channel: str) -> list[Message]:
        """Top-level messages of `channel`, as they stand now, each with `.replies`."""
        with self.workspace.lock:
            return self.workspace.messages(channel)

    def threads(self, channel: str) -> dict[str, list[Message]]:
        with self.workspace.lock:
            return self.workspace.threads(channel)

    def message(self, channel: str, ts: str) -> Message:
        with self.workspace.lock:
            stored = self.workspace.find(channel, ts)
            if stored is None:
                raise KeyError(f"no message {ts} in {channel}")
            return self.workspace.snapshot(stored)

    def ephemerals(self, user: str | None = None) -> list[Ephemeral]:
        with self.workspace.lock:
            return [e for e in self.workspace.ephemerals if user is None or e.user == user]

    def uploads(self) -> list[Upload]:
        with self.workspace.lock:
            return list(self.workspace.uploads.values())

    def home(self, user: str) -> dict[str, Any] | None:
        """The Home tab view last published for `user`, as `views.publish` answered it."""
        with self.workspace.lock:
            published = self.workspace.homes.get(user)
            return json.loads(json.dumps(published.view)) if published else None

    # -- serving -----------------------------------------------------------------------------

    def answer(
        self, method: str, args: dict[str, Any], token: str | None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Status, JSON body and extra headers for one call; records it."""
        status, headers = 200, {}
        handler = HANDLERS.get(method)
        if handler is None:
            body = {"ok": False, "error": "unknown_method", "req_method": method}
        elif token is None:
            body = {"ok": False, "error": "not_authed"}
        elif token not in self.tokens and token not in self.app_tokens:
            body = {"ok": False, "error": "invalid_auth"}
        elif (token in self.app_tokens) != (method in methods.APP_LEVEL_METHODS):
            body = {"ok": False, "error": "not_allowed_token_type"}
        else:
            channel = args.get("channel") or args.get("channel_id")
            wait = self.limiter.check(method, str(channel) if channel else None)
            if wait is not None:
                status, headers = 429, {"Retry-After": str(wait)}
                body = {"ok": False, "error": "ratelimited"}
            else:
                context = methods.Context(
                    origin=self.origin,
                    long_text=self.long_text,
                    open_link=self.socket_mode.open_url,
                )
                with self.workspace.lock:
                    try:
                        body = handler(self.workspace, args, context)
                    except methods.SlackError as error:
                        body = error.body()
        with self.workspace.lock:
            # Copies, so a later change to the workspace cannot rewrite what was answered then.
            recorded = copy.deepcopy((args, body))
            self._calls.append(
                Call(
                    method=method,
                    args=recorded[0],
                    status=status,
                    response=recorded[1],
                    at=time.time(),
                )
            )
        return status, body, headers


def _handler_for(emulator: SlackEmulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._api(b"")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = urlsplit(self.path).path
            if path.startswith(uploads.UPLOAD_PATH):
                with emulator.workspace.lock:
                    status, text = uploads.receive_bytes(
                        emulator.workspace, path, self.headers.get("Content-Type", ""), body
                    )
                self._send(status, text.encode(), "text/plain; charset=utf-8", {})
            else:
                self._api(body)

        def _api(self, body: bytes) -> None:
            url = urlsplit(self.path)
            if not url.path.startswith(API_PATH):
                self._send(404, b"Not Found", "text/plain", {})
                return
            args: dict[str, Any] = dict(parse_qsl(url.query))
            parsed = wire.parse_body(self.headers.get("Content-Type", ""), body)
            if parsed is None:
                self._json(200, {"ok": False, "error": "invalid_json"}, {})
                return
            args.update(parsed)
            header_token = wire.bearer(self.headers.get("Authorization"))
            token = header_token or args.pop("token", None)
            args.pop("token", None)
            wire.decode_json_fields(args)
            method = url.path[len(API_PATH) :]
            if method in methods.APP_LEVEL_METHODS and header_token is None:
                token = None  # the app-level token counts only in the Authorization header
            status, answer, headers = emulator.answer(method, args, token)
            self._json(status, answer, headers)

        def _json(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
            self._send(
                status, json.dumps(body).encode(), "application/json; charset=utf-8", headers
            )

        def _send(
            self, status: int, payload: bytes, content_type: str, headers: dict[str, str]
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            # The calls are recorded on the emulator; stderr noise would only hide test output.
            pass

    return Handler


@pytest.fixture
def slack_api() -> Iterator[SlackEmulator]:
    """A running emulator for one test; its `url` is the WebClient `base_url`."""
    with SlackEmulator() as emulator:
        yield emulator
