"""`python -m bot serve`: the Slack bot in Socket Mode or behind HTTP, with its background work.

On `--port`, in both modes: `/healthz` (the process serves), `/readyz` (the database, the
scheduler and the link to Slack, each named when it is not ready) and `/metrics` (Prometheus).
Over HTTP, Slack's requests come to `/slack/events` on the same port; in Socket Mode over the
socket.
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any
from wsgiref.types import StartResponse, WSGIEnvironment

import waitress
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest

from adapters.scheduler import ApsScheduler
from bot import logs, wiring
from bot.config import Config, Settings
from bot.domain.errors import OperationalError, UserError
from bot.domain.redaction import Redactor

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
EXPIRY_SWEEP_SECONDS = 30
HTTP_THREADS = 16

WsgiApp = Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]
# One readiness check: a few words on what is fine, or an `OperationalError` saying what is not.
Probe = Callable[[], str]


class Readiness:
    """What /readyz answers: every check's word; ready when each one is fine."""

    def __init__(self, probes: Mapping[str, Probe], redactor: Redactor) -> None:
        self._probes = probes
        self._redact = redactor

    def report(self) -> tuple[bool, dict[str, Any]]:
        """(ready, the JSON body): `status`, the names `not_ready`, and each check's `detail`."""
        checks: dict[str, dict[str, Any]] = {}
        for name, probe in self._probes.items():
            try:
                checks[name] = {"ok": True, "detail": self._redact.text(probe())}
            except OperationalError as exc:
                checks[name] = {"ok": False, "detail": self._redact.text(str(exc))}
            except Exception:
                log.exception("the readiness check of %s failed", name)
                checks[name] = {"ok": False, "detail": "the check failed (see the bot's log)"}
        failing = [name for name, check in checks.items() if not check["ok"]]
        status = "not ready" if failing else "ready"
        return not failing, {"status": status, "not_ready": failing, "checks": checks}


def http_app(
    bot: wiring.Bot, readiness: Readiness | None = None, *, slack_events: bool = True
) -> WsgiApp:
    """/healthz, /readyz (given `readiness`), /metrics (the bot's), and unless `slack_events` is
    off (Socket Mode), Slack's requests at /slack/events, their signatures checked by Bolt."""
    if slack_events:
        assert bot.app is not None, "a Slack bot has a Bolt app"
    slack = SlackRequestHandler(bot.app) if slack_events and bot.app is not None else None
    metrics = bot.metrics.wsgi_app() if bot.metrics is not None else None
    serving = _serving(bot)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == EVENTS_PATH and slack is not None:
            with serving():
                return slack(environ, start_response)
        if path == "/healthz":
            return _answer(start_response, "200 OK", b"ok\n")
        if path == "/readyz" and readiness is not None:
            ready, body = readiness.report()
            status = "200 OK" if ready else "503 Service Unavailable"
            text = json.dumps(body, ensure_ascii=False).encode() + b"\n"
            return _answer(start_response, status, text, "application/json")
        if path == "/metrics" and metrics is not None:
            return metrics(environ, start_response)
        return _answer(start_response, "404 Not Found", b"not found\n")

    return app


def _serving(bot: wiring.Bot) -> Callable[[], AbstractContextManager[None]]:
    """What marks one of Slack's requests as being answered, so that the work handed off by the
    requests before it waits (see `bot.workers.Foreground`)."""
    return bot.foreground.serving if bot.foreground is not None else nullcontext


class ForegroundSocketMode(SocketModeHandler):
    """Socket Mode whose requests, while being answered, hold back the task pool as over HTTP."""

    def __init__(self, bot: wiring.Bot, app_token: str) -> None:
        assert bot.app is not None, "a Slack bot has a Bolt app"
        super().__init__(bot.app, app_token)
        self._serving = _serving(bot)

    # Narrowed to the built-in client as the parent narrows it.
    def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
        with self._serving():
            super().handle(client, req)


def _answer(
    start_response: StartResponse, status: str, body: bytes, content_type: str = "text/plain"
) -> list[bytes]:
    headers = [
        ("Content-Type", f"{content_type}; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
    ]
    start_response(status, headers)
    return [body]


def start_background(bot: wiring.Bot, scheduler: ApsScheduler) -> None:
    """Recovery now, and the claims on runs kept from then on (`bot.claims`); then the
    scheduler: scheduled runs' starts and reminders, the approval expiry sweep every half minute
    and the behind-latest digest, in whichever process holds the scheduling lease."""
    bot.claims.start()
    scheduler.start(bot.conversation, on_duty=bot.scheduling.reschedule)
    scheduler.every(EXPIRY_SWEEP_SECONDS, bot.conversation.expire_due, "expire-approvals")
    if bot.scheduling.settings.digest_channel:
        scheduler.repeat_behind_latest(bot.scheduling.settings.digest_every)


def serve(
    settings: Settings,
    config: Config,
    *,
    port: int,
    host: str,
    log_format: logs.LogFormat = "json",
) -> int:
    redactor = wiring.redactor(settings, config)
    logs.install(redactor, log_format=log_format)
    scheduler = wiring.scheduler(settings, config)
    bot = wiring.build_slack_bot(settings, config, scheduler=scheduler)
    start_background(bot, scheduler)
    socket: SocketModeHandler | None = None
    try:
        if settings.slack_app_token is not None:
            socket = ForegroundSocketMode(bot, settings.slack_app_token.get_secret_value())
            socket.connect()  # type: ignore[no-untyped-call]
            probes = wiring.readiness_probes(settings, config, scheduler, socket_mode=socket.client)
            app = http_app(bot, Readiness(probes, redactor), slack_events=False)
            serving = "Slack in Socket Mode; /healthz, /readyz and /metrics"
        else:
            probes = wiring.readiness_probes(settings, config, scheduler)
            app = http_app(bot, Readiness(probes, redactor))
            serving = f"Slack over HTTP at {EVENTS_PATH}, /healthz, /readyz and /metrics"
            _ask_slack_now(probes["slack"])
        server = _listen(app, host, port)
        log.warning("serving %s on http://%s:%s", serving, host, server.effective_port)
        # What start-up built lives as long as the process: kept out of every later full
        # collection, which otherwise walks it all with the interpreter lock held (up to 90 ms,
        # stalling every acknowledgement in flight).
        gc.collect()
        gc.freeze()
        server.run()
    finally:
        if socket is not None:
            socket.close()  # type: ignore[no-untyped-call]
        scheduler.shutdown()
        bot.close()
    return 0


def _ask_slack_now(probe: Probe) -> None:
    """The Slack check's first answer, at start: kept for /readyz's next calls, and logged."""
    try:
        log.info("Slack: %s", probe())
    except OperationalError as exc:
        log.warning("Slack: %s", exc)


def _listen(app: WsgiApp, host: str, port: int) -> Any:
    try:
        return waitress.create_server(app, host=host, port=port, threads=HTTP_THREADS)
    except OSError as exc:
        raise UserError(
            f"The bot cannot listen on {host}:{port}: {exc.strerror or exc}.",
            "Choose another --port (or --host), or stop what uses it.",
        ) from exc
