"""`python -m bot serve`: the Slack bot in Socket Mode or behind HTTP, with its background work."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from wsgiref.types import StartResponse, WSGIEnvironment

import waitress
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler

from adapters.scheduler import ApsScheduler
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


def start_background(bot: wiring.Bot, scheduler: ApsScheduler) -> None:
    """Recovery now; then the scheduler: scheduled runs' starts and reminders, the approval
    expiry sweep every half minute and the behind-latest digest, in whichever process holds the
    scheduling lease."""
    for run in interrupt_unfinished(bot.store, bot.service.clock):
        bot.conversation.tell_interrupted(run)
    scheduler.start(bot.conversation, on_duty=bot.scheduling.reschedule)
    scheduler.every(EXPIRY_SWEEP_SECONDS, bot.conversation.expire_due, "expire-approvals")
    if bot.scheduling.settings.digest_channel:
        scheduler.repeat_behind_latest(bot.scheduling.settings.digest_every)


def serve(settings: Settings, config: Config, *, port: int, host: str) -> int:
    logs.install(wiring.redactor(settings, config))
    scheduler = wiring.scheduler(settings, config)
    bot = wiring.build_slack_bot(settings, config, scheduler=scheduler)
    start_background(bot, scheduler)
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
        scheduler.shutdown()
        bot.close()
    return 0
