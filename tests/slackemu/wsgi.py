"""Serve a slack_bolt `App` over real HTTP on a free loopback port, as Bolt's HTTP mode would be.

Uses Bolt's own WSGI adapter under `wsgiref`, so requests go through the same signature check,
body parsing and acknowledgement path as in production.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        # One line per request on stderr would bury the test's own output.
        pass


class _ThreadedServer(ThreadingMixIn, WSGIServer):
    # Slack may deliver a retry while the first delivery is still being handled.
    daemon_threads = True


@contextmanager
def serve_bolt(app: App, path: str = "/slack/events") -> Iterator[str]:
    """Yield the Request URL (`http://127.0.0.1:<port><path>`) while `app` answers on it."""
    handler = SlackRequestHandler(app, path)
    server = make_server(
        "127.0.0.1", 0, handler, server_class=_ThreadedServer, handler_class=_QuietHandler
    )
    # A short poll keeps shutdown quick; the default half second adds up over many tests.
    thread = threading.Thread(
        target=server.serve_forever, args=(0.02,), name="bolt-wsgi", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}{path}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
