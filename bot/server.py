"""`python -m bot serve`: the Slack bot in Socket Mode or behind HTTP, with its background work."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from wsgiref.types import StartResponse, WSGIEnvironment

import waitress
from apscheduler.schedulers.background import BackgroundScheduler
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot import logs, wiring
from bot.config import Config, Settings
from bot.engine.recovery import interrupt_unfinished

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
EXPIRY_SWEEP_SECONDS = 30
HTTP_THREADS = 16

WsgiApp = Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]


def http_app(bot: wiring.Bot) -> WsgiApp:
    """Slack's requests at /slack/events (signature checked by Bolt), and /healthz."""
    assert bot.app is not None, "a Slack bot has a Bolt app"
    slack = SlackRequestHandler(bot.app)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == EVENTS_PATH:
            return slack(environ, start_response)
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return app


def start_background(bot: wiring.Bot) -> BackgroundScheduler:
    """Recovery now, then the approval expiry sweep every half minute."""
    for run in interrupt_unfinished(bot.store, bot.service.clock):
        bot.conversation.tell_interrupted(run)
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(
        bot.conversation.expire_due,
        "interval",
        seconds=EXPIRY_SWEEP_SECONDS,
        id="expire-approvals",
        coalesce=True,
        max_instances=1,
    )
    scheduler.start()
    return scheduler


def serve(settings: Settings, config: Config, *, port: int, host: str) -> int:
    logs.install(wiring.redactor(settings, config))
    bot = wiring.build_slack_bot(settings, config)
    scheduler = start_background(bot)
    try:
        if settings.slack_app_token is not None:
            log.warning("serving Slack in Socket Mode")
            assert bot.app is not None
            handler = SocketModeHandler(bot.app, settings.slack_app_token.get_secret_value())
            handler.start()  # type: ignore[no-untyped-call]
        else:
            log.warning("serving Slack over HTTP on %s:%s%s", host, port, EVENTS_PATH)
            waitress.serve(http_app(bot), host=host, port=port, threads=HTTP_THREADS)
    finally:
        scheduler.shutdown(wait=False)
        bot.close()
    return 0
