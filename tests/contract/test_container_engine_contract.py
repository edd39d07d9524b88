"""The `ContainerEngine` contract, run against the in-memory twin and against the real dockerd and
registry through the docker SDK adapter."""

from __future__ import annotations

import contextlib
import secrets
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest

from adapters.docker_engine import DockerConnector
from adapters.memory.docker import MemoryContainerEngine, MemoryDockerConnector, MemoryRegistry
from bot.domain.errors import (
    ContainerEngineUnavailable,
    ContainerNotFound,
    ImageNotFound,
    RegistryUnavailable,
)
from bot.domain.inventory import DockerEndpoint
from bot.domain.ports import ContainerEngine, ContainerEngineConnector
from tests.hostkit.services import Services, free_port


@dataclass
class World:
    """One engine and what the tests may do around it, the same words for twin and real."""

    connector: ContainerEngineConnector
    endpoint: DockerEndpoint
    repository: str  # in a registry the engine reaches, tags 3.9.0.3 and 3.9.1
    local: str  # a repository name of our own for local tags
    start: Callable[[str, str, bool], None]  # (container name, image, keep running?)
    take_engine_down: Callable[[], ContainerEngine]  # an engine whose daemon then stops answering
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def engine(self) -> ContainerEngine:
        engine = self.connector.connect(self.endpoint)
        self.cleanups.append(engine.close)
        return engine

    def container_name(self) -> str:
        return f"{self.local}-{secrets.token_hex(3)}"


def _memory_world() -> World:
    registry = MemoryRegistry()
    repository = "registry.test:5000/myst-studio"
    for version in ("3.9.0.3", "3.9.1"):
        registry.push(f"{repository}:{version}")
    engine = MemoryContainerEngine(registry, url="unix:///memory/docker.sock")
    connector = MemoryDockerConnector({engine.url: engine})

    def start(name: str, image: str, running: bool) -> None:
        engine.run_container(name, image, status="running" if running else "exited")

    def take_down() -> ContainerEngine:
        spare = MemoryContainerEngine(registry, url="unix:///memory/spare.sock")
        connector.engines[spare.url] = spare
        connected = connector.connect(DockerEndpoint(url=spare.url))
        spare.set_available(False)
        return connected

    return World(connector, DockerEndpoint(url=engine.url), repository, "local", start, take_down)


def _docker_world(services: Services, repository: str, tmp: Path) -> World:
    client = docker.DockerClient(base_url=services.docker_host, version="auto")
    local = f"contract-{secrets.token_hex(4)}"
    names: list[str] = []
    connector = DockerConnector()

    def start(name: str, image: str, running: bool) -> None:
        names.append(name)
        command = ["/bin/sleep", "600"] if running else ["/bin/true"]
        container = client.containers.run(
            image, name=name, entrypoint=command, network_mode="host", detach=True
        )
        if not running:
            container.wait(timeout=30)

    def take_down() -> ContainerEngine:
        relay = _SocketRelay(tmp / "relay.sock", services.docker_host.removeprefix("unix://"))
        connected = connector.connect(DockerEndpoint(url=f"unix://{relay.path}"))
        relay.stop()
        return connected

    def cleanup() -> None:
        for name in names:
            with contextlib.suppress(docker.errors.NotFound):
                client.containers.get(name).remove(force=True)
        for image in client.images.list(name=local):
            for tag in image.tags:
                client.images.remove(tag, noprune=True)
        client.close()

    world = World(
        connector, DockerEndpoint(url=services.docker_host), repository, local, start, take_down
    )
    world.cleanups.append(cleanup)
    return world


class _SocketRelay(socketserver.ThreadingUnixStreamServer):
    """A unix socket that passes bytes to dockerd's until stopped: a daemon we can make vanish."""

    daemon_threads = True

    def __init__(self, path: Path, target: str) -> None:
        self.path, self.target = path, target
        self.live: set[socket.socket] = set()
        super().__init__(str(path), _RelayHandler)
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.path.unlink()
        for connection in list(self.live):  # kept-alive connections die with the daemon too
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _RelayHandler(socketserver.BaseRequestHandler):
    server: _SocketRelay

    def handle(self) -> None:
        self.server.live.add(self.request)
        with socket.socket(socket.AF_UNIX) as upstream:
            upstream.connect(self.server.target)
            pump = threading.Thread(target=_pump, args=(upstream, self.request), daemon=True)
            pump.start()
            _pump(self.request, upstream)
            pump.join(5)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


@pytest.fixture(params=["memory", "docker"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    if request.param == "memory":
        made = _memory_world()
    else:
        services = request.getfixturevalue("services")
        made = _docker_world(services, request.getfixturevalue("myst_images"), tmp_path)
    yield made
    for cleanup in reversed(made.cleanups):
        cleanup()


def test_an_engine_that_does_not_answer_is_unavailable(world: World) -> None:
    url = "unix:///nonexistent/docker.sock"
    with pytest.raises(ContainerEngineUnavailable, match=url):
        world.connector.connect(DockerEndpoint(url=url))


def test_plain_tcp_to_another_machine_is_refused(world: World) -> None:
    with pytest.raises(ContainerEngineUnavailable, match=r"tcp://192\.0\.2\.10:2375.*tls_ca"):
        world.connector.connect(DockerEndpoint(url="tcp://192.0.2.10:2375"))


def test_plain_tcp_on_loopback_is_allowed_but_must_answer(world: World) -> None:
    url = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(ContainerEngineUnavailable, match=url) as caught:
        world.connector.connect(DockerEndpoint(url=url))
    assert "tls" not in str(caught.value).lower()


def test_missing_tls_files_are_named(world: World) -> None:
    endpoint = DockerEndpoint(url="tcp://docker.example.com:2376", tls_ca=Path("/nope/ca.pem"))
    with pytest.raises(ContainerEngineUnavailable, match=r"/nope/ca\.pem"):
        world.connector.connect(endpoint)


def test_an_engine_that_stops_answering_is_unavailable(world: World) -> None:
    engine = world.take_engine_down()
    with pytest.raises(ContainerEngineUnavailable):
        engine.images(world.repository)
    with pytest.raises(ContainerEngineUnavailable):
        engine.pull(f"{world.repository}:3.9.1")
    with pytest.raises(ContainerEngineUnavailable):
        engine.container("anything")
    engine.close()


def test_an_unknown_container_is_not_found(world: World) -> None:
    name = world.container_name()
    with pytest.raises(ContainerNotFound, match=name):
        world.engine().container(name)


def test_a_pulled_image_is_listed_under_its_repository(world: World) -> None:
    engine = world.engine()
    pulled = engine.pull(f"{world.repository}:3.9.1")
    assert pulled.id.startswith("sha256:")
    assert f"{world.repository}:3.9.1" in pulled.tags
    listed = {i.id: i for i in engine.images(world.repository)}
    assert f"{world.repository}:3.9.1" in listed[pulled.id].tags
    assert engine.images(f"{world.local}-nothing") == []


@pytest.mark.parametrize("tag", ["9.9.9", "latest"])
def test_pulling_a_tag_the_registry_lacks_is_image_not_found(world: World, tag: str) -> None:
    with pytest.raises(ImageNotFound, match="9.9.9" if tag != "latest" else "latest"):
        world.engine().pull(f"{world.repository}:{tag}")


def test_pulling_a_repository_the_registry_lacks_is_image_not_found(world: World) -> None:
    host = world.repository.partition("/")[0]
    with pytest.raises(ImageNotFound):
        world.engine().pull(f"{host}/no-such-product:1.0")


def test_pulling_an_invalid_name_is_image_not_found(world: World) -> None:
    with pytest.raises(ImageNotFound):
        world.engine().pull(f"{world.repository.upper()}:1.0")


def test_pulling_from_a_registry_that_does_not_answer_is_registry_unavailable(
    world: World,
) -> None:
    image = f"127.0.0.1:{free_port()}/myst-studio:3.9.1"
    with pytest.raises(RegistryUnavailable, match=image):
        world.engine().pull(image)


def test_tag_points_the_target_at_the_source_and_moves_it(world: World) -> None:
    engine = world.engine()
    old = engine.pull(f"{world.repository}:3.9.0.3")
    new = engine.pull(f"{world.repository}:3.9.1")

    tagged = engine.tag(f"{world.repository}:3.9.0.3", world.local)
    assert tagged.id == old.id
    assert f"{world.local}:latest" in tagged.tags
    assert [i.id for i in engine.images(world.local)] == [old.id]

    engine.tag(new.id, f"{world.local}:latest")
    assert [i.id for i in engine.images(world.local)] == [new.id]
    assert f"{world.local}:latest" not in engine.tag(old.id, f"{world.local}:old").tags


def test_tagging_an_unknown_image_is_image_not_found(world: World) -> None:
    with pytest.raises(ImageNotFound, match=f"{world.local}-nothing"):
        world.engine().tag(f"{world.local}-nothing:1.0", world.local)


def test_tagging_with_an_invalid_name_is_image_not_found(world: World) -> None:
    engine = world.engine()
    engine.pull(f"{world.repository}:3.9.1")
    with pytest.raises(ImageNotFound, match="Not Valid"):
        engine.tag(f"{world.repository}:3.9.1", "Not Valid")


def test_a_container_shows_its_image_and_the_tags_pointing_there_now(world: World) -> None:
    engine = world.engine()
    old = engine.pull(f"{world.repository}:3.9.0.3")
    engine.pull(f"{world.repository}:3.9.1")
    engine.tag(f"{world.repository}:3.9.0.3", world.local)
    name = world.container_name()
    world.start(name, world.local, True)

    running = engine.container(name)
    assert (running.name, running.status, running.image_id) == (name, "running", old.id)
    assert {f"{world.local}:latest", f"{world.repository}:3.9.0.3"} <= set(running.image_tags)
    assert running.started_at

    # The local name moves on to the new version; the container still runs the old image,
    # now reachable only through its versioned tag.
    engine.tag(f"{world.repository}:3.9.1", world.local)
    after = engine.container(name)
    assert after.image_id == old.id
    assert f"{world.repository}:3.9.0.3" in after.image_tags
    assert f"{world.local}:latest" not in after.image_tags


def test_a_stopped_container_says_exited(world: World) -> None:
    engine = world.engine()
    engine.pull(f"{world.repository}:3.9.1")
    name = world.container_name()
    world.start(name, f"{world.repository}:3.9.1", False)
    assert engine.container(name).status == "exited"


def test_close_is_idempotent(world: World) -> None:
    engine = world.connector.connect(world.endpoint)
    engine.close()
    engine.close()
