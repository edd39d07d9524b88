"""The `HttpCheck` contract, run against the in-memory twin and against requests on a real
HTTP server on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from adapters.http_check import MAX_BODY_BYTES, RequestsHttpCheck
from adapters.memory.http import MemoryHttpCheck
from bot.domain.errors import HttpCheckFailed
from bot.domain.ports import HttpCheck


@dataclass
class _Routes:
    pages: dict[str, tuple[int, bytes]] = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        if self.path == "/endless":
            self._endless()
            return
        if self.path == "/silent":
            time.sleep(3)  # accepts the connection, then says nothing
            return
        status, body = self.server.routes.pages.get(self.path, (404, b"no such page"))
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _endless(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        try:
            while True:
                self.wfile.write(b"x" * 4096)
        except OSError:
            return  # the client stopped reading, as it should

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    routes: _Routes


def _dead_url() -> str:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


class Site:
    """A place to publish pages and the check that reads them."""

    def __init__(self, check: HttpCheck, base: str, publish: Callable[[str, str, int], None]):
        self.check = check
        self.base = base
        self._publish = publish

    def page(self, path: str, body: str, status: int = 200) -> str:
        self._publish(path, body, status)
        return self.base + path


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.routes = _Routes()
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(params=["memory", "requests"])
def site(request: pytest.FixtureRequest, server: _Server) -> Site:
    if request.param == "memory":
        twin = MemoryHttpCheck()
        base = "http://console.test:8080"
        return Site(twin, base, lambda p, b, s: twin.set_page(base + p, b, status=s))
    base = f"http://127.0.0.1:{server.server_address[1]}"

    def publish(path: str, body: str, status: int) -> None:
        server.routes.pages[path] = (status, body.encode())

    return Site(RequestsHttpCheck(), base, publish)


def test_a_page_is_read_with_its_status(site: Site) -> None:
    url = site.page("/console", "<html>MyST Studio <footer>Version 3.9.1</footer></html>")
    response = site.check.get(url, timeout=5)
    assert response.status == 200
    assert response.url == url
    assert "Version 3.9.1" in response.body
    assert response.elapsed >= 0


@pytest.mark.parametrize("status", [404, 500, 503])
def test_any_status_is_a_response(site: Site, status: int) -> None:
    url = site.page(f"/status-{status}", f"failed with {status}", status)
    response = site.check.get(url, timeout=5)
    assert response.status == status
    assert response.body == f"failed with {status}"


def test_the_body_is_bounded(site: Site) -> None:
    url = site.page("/big", "é" + "a" * (3 * MAX_BODY_BYTES))
    body = site.check.get(url, timeout=5).body
    assert body.startswith("éa")
    assert len(body.encode()) <= MAX_BODY_BYTES


def test_utf8_text_survives(site: Site) -> None:
    url = site.page("/utf8", "Überwachung – MyST Studio ✓")
    assert site.check.get(url, timeout=5).body == "Überwachung – MyST Studio ✓"


def test_nothing_listening_is_a_failure_naming_the_url(site: Site) -> None:
    url = _dead_url()
    with pytest.raises(HttpCheckFailed, match="Nothing answered") as caught:
        site.check.get(url, timeout=2)
    assert url in str(caught.value)
    assert caught.value.host == url


# Only the real check can meet these servers: they misbehave at the socket level.


def test_an_endless_page_is_cut_at_the_bound(server: _Server) -> None:
    url = f"http://127.0.0.1:{server.server_address[1]}/endless"
    started = time.monotonic()
    response = RequestsHttpCheck().get(url, timeout=5)
    assert response.status == 200
    assert len(response.body) == MAX_BODY_BYTES
    assert time.monotonic() - started < 5


def test_a_server_that_never_answers_times_out(server: _Server) -> None:
    url = f"http://127.0.0.1:{server.server_address[1]}/silent"
    started = time.monotonic()
    with pytest.raises(HttpCheckFailed, match="ReadTimeout"):
        RequestsHttpCheck().get(url, timeout=0.5)
    assert time.monotonic() - started < 2.5
