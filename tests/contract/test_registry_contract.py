"""The `ImageRegistry` contract, run against the in-memory twin and against the real registry
(Debian's docker-registry) through requests. Hosted registries' auth is met on a small loopback
server speaking the same token protocol, since the test registry runs without auth."""

from __future__ import annotations

import base64
import json
import logging
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import docker
import pytest
import requests

from adapters.memory.docker import MemoryRegistry
from adapters.registry import RegistryHttp
from bot.domain.errors import RegistryUnavailable
from bot.domain.inventory import Registry
from bot.domain.ports import ImageRegistry
from tests.hostkit.services import Services, free_port

TAGS = ["1.0", "1.1", "10.0", "2.0"]
USER, PASSWORD, TOKEN = "robot", "s3cret-Pa55", "token-abc123"


class _Hosted(ThreadingHTTPServer):
    """A registry that wants Basic credentials or the Bearer token dance, and pages by 2."""

    daemon_threads = True
    mode = "bearer"
    tag_requests = 0
    repositories: dict[str, list[str]]
    token_requests: list[dict[str, list[str]]]


class _HostedHandler(BaseHTTPRequestHandler):
    server: _Hosted

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/token":
            self.server.token_requests.append(query)
            if self._basic_ok():
                self._send(200, {"token": TOKEN})
            else:
                self._send(401, {"errors": [{"code": "UNAUTHORIZED"}]})
            return
        self.server.tag_requests += 1
        if not self._authorised():
            return
        repository = url.path.removeprefix("/v2/").removesuffix("/tags/list")
        if repository == "broken":
            self._send(500, {"errors": [{"code": "UNKNOWN"}]})
            return
        if repository == "garbled":
            self._send(200, b"<html>maintenance</html>")
            return
        if repository not in self.server.repositories:
            self._send(404, {"errors": [{"code": "NAME_UNKNOWN"}]})
            return
        tags = self.server.repositories[repository]
        last, n = query.get("last", [""])[0], int(query.get("n", ["2"])[0])
        page = [t for t in tags if t > last][: min(n, 2)]
        headers = {}
        if page and page[-1] != tags[-1]:
            headers["Link"] = f'</v2/{repository}/tags/list?last={page[-1]}&n={n}>; rel="next"'
        self._send(200, {"name": repository, "tags": page}, headers)

    def _authorised(self) -> bool:
        if self.server.mode == "basic":
            if self._basic_ok():
                return True
            self._send(401, {}, {"WWW-Authenticate": 'Basic realm="registry"'})
            return False
        if self.headers.get("Authorization") == f"Bearer {TOKEN}":
            return True
        port = self.server.server_address[1]
        challenge = f'Bearer realm="http://127.0.0.1:{port}/token",service="registry.test"'
        self._send(401, {}, {"WWW-Authenticate": challenge})
        return False

    def _basic_ok(self) -> bool:
        expected = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        return self.headers.get("Authorization") == f"Basic {expected}"

    def _send(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def hosted() -> Iterator[_Hosted]:
    server = _Hosted(("127.0.0.1", 0), _HostedHandler)
    server.repositories = {"contract/app": TAGS}
    server.token_requests = []
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def published(services: Services, myst_images: str) -> Iterator[str]:
    """A repository of our own in the real registry, holding exactly TAGS (deleted afterwards)."""
    repository = f"contract-{secrets.token_hex(4)}/app"
    client = docker.DockerClient(base_url=services.docker_host, version="auto")
    digests = set()
    try:
        image = client.images.get(f"{myst_images}:3.9.1")
        for tag in TAGS:
            image.tag(f"{services.registry}/{repository}", tag)
            for line in client.images.push(
                f"{services.registry}/{repository}", tag=tag, stream=True, decode=True
            ):
                assert "error" not in line, line
                digests.add(line.get("aux", {}).get("Digest"))
            client.images.remove(f"{services.registry}/{repository}:{tag}", noprune=True)
    finally:
        client.close()
    yield repository
    for digest in digests - {None}:
        requests.delete(f"{services.registry_url}/v2/{repository}/manifests/{digest}", timeout=10)


@dataclass
class World:
    registries: ImageRegistry
    plain: Registry  # no auth, holds `repository` with TAGS
    repository: str
    secured: Registry  # wants USER/PASSWORD, holds contract/app with TAGS


@pytest.fixture(params=["memory", "http"])
def world(request: pytest.FixtureRequest) -> World:
    if request.param == "memory":
        twin = MemoryRegistry()
        for tag in TAGS:
            twin.push(f"registry.test:5000/contract/app:{tag}")
            twin.push(f"secure.test:5000/contract/app:{tag}")
        twin.require_login("secure.test:5000", USER, PASSWORD)
        return World(
            twin,
            Registry(url="http://registry.test:5000"),
            "contract/app",
            Registry(url="https://secure.test:5000", username=USER, password=PASSWORD),
        )
    services: Services = request.getfixturevalue("services")
    hosted: _Hosted = request.getfixturevalue("hosted")
    hosted.mode = "bearer"
    return World(
        RegistryHttp(),
        Registry(url=services.registry_url),
        request.getfixturevalue("published"),
        _secured(hosted),
    )


def _secured(hosted: _Hosted, password: str = PASSWORD) -> Registry:
    url = f"http://127.0.0.1:{hosted.server_address[1]}"
    return Registry(url=url, username=USER, password=password)


def test_all_tags_of_a_repository(world: World) -> None:
    tags = world.registries.tags(world.plain, world.repository)
    assert sorted(tags) == sorted(TAGS)
    assert len(tags) == len(set(tags))


def test_an_unknown_repository_has_no_tags(world: World) -> None:
    assert world.registries.tags(world.plain, f"{world.repository}-nothing") == []


def test_a_registry_that_does_not_answer_is_unavailable(world: World) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RegistryUnavailable, match=url):
        world.registries.tags(Registry(url=url), "myst-studio")


def test_credentials_open_a_secured_registry(world: World) -> None:
    assert sorted(world.registries.tags(world.secured, "contract/app")) == sorted(TAGS)


def test_wrong_credentials_are_refused_without_showing_them(world: World) -> None:
    wrong = Registry(url=world.secured.url, username=USER, password="not-it-Zq9")
    with pytest.raises(RegistryUnavailable) as caught:
        world.registries.tags(wrong, "contract/app")
    assert "not-it-Zq9" not in str(caught.value)
    assert world.secured.url in str(caught.value)


# The paths only the HTTP adapter has: pagination, both auth schemes, broken answers.


def test_a_page_size_is_only_a_hint(services: Services, published: str) -> None:
    # docker-registry 2.8 ignores `n` and sends every tag at once, in no particular order.
    tags = RegistryHttp(page_size=1).tags(Registry(url=services.registry_url), published)
    assert sorted(tags) == TAGS


def test_pages_are_followed_with_one_token(hosted: _Hosted) -> None:
    hosted.mode = "bearer"
    hosted.token_requests.clear()
    hosted.tag_requests = 0
    assert RegistryHttp(page_size=50).tags(_secured(hosted), "contract/app") == TAGS
    assert hosted.tag_requests == 1 + 2  # the challenge, then two pages of two
    assert len(hosted.token_requests) == 1


def test_the_bearer_challenge_is_answered_with_a_scoped_token(
    hosted: _Hosted, caplog: pytest.LogCaptureFixture
) -> None:
    hosted.mode = "bearer"
    hosted.token_requests.clear()
    with caplog.at_level(logging.DEBUG):
        assert RegistryHttp().tags(_secured(hosted), "contract/app") == TAGS
    assert hosted.token_requests == [
        {"service": ["registry.test"], "scope": ["repository:contract/app:pull"]}
    ]
    assert PASSWORD not in caplog.text
    assert TOKEN not in caplog.text


def test_basic_auth_is_sent_when_the_registry_asks_for_it(hosted: _Hosted) -> None:
    hosted.mode = "basic"
    url = f"http://127.0.0.1:{hosted.server_address[1]}"
    registry = Registry(url=url, username=USER, password=PASSWORD)
    assert RegistryHttp().tags(registry, "contract/app") == TAGS
    with pytest.raises(RegistryUnavailable, match="asks for credentials"):
        RegistryHttp().tags(Registry(url=url), "contract/app")


@pytest.mark.parametrize(
    ("repository", "problem"), [("broken", r"HTTP 500 \(UNKNOWN\)"), ("garbled", "not JSON")]
)
def test_a_broken_answer_is_unavailable(hosted: _Hosted, repository: str, problem: str) -> None:
    hosted.mode = "basic"
    with pytest.raises(RegistryUnavailable, match=problem):
        RegistryHttp().tags(_secured(hosted), repository)


def test_user_info_in_the_url_is_never_shown() -> None:
    url = f"http://robot:{PASSWORD}@127.0.0.1:{free_port()}"
    with pytest.raises(RegistryUnavailable) as caught:
        RegistryHttp().tags(Registry(url=url), "myst-studio")
    assert PASSWORD not in str(caught.value)
