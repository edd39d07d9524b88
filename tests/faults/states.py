"""What a test host looks like at one moment, read without going through any relay."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import docker
import requests

from tests.hostkit.myst import VERSION_LABEL, MystHost
from tests.hostkit.proxy import ProxyHost, fetch


@dataclass(frozen=True, kw_only=True)
class HostState:
    """A MyST Studio host: its container, the versions it runs and shows, its data, its tag."""

    container: str | None  # the container's id; None when there is none
    status: str | None
    image: str | None  # the id of the image it runs
    running: str | None  # version of the image the running container was started from
    console: str | None  # version the console shows; None when it does not answer
    tag: str | None  # version of the local image `start.sh` would run next
    database: str | None

    def brief(self) -> str:
        container = f"{self.container[:12]} {self.status}" if self.container else "no container"
        return (
            f"container {container}, running {self.running}, console {self.console}, "
            f"local tag {self.tag}"
        )


@dataclass(frozen=True, kw_only=True)
class ProxyState:
    """The proxy: the color `active.sh` reports and the version a visitor is served."""

    active: str | None
    served: str | None

    def brief(self) -> str:
        return f"active {self.active}, serves {self.served}"


def host_state(host: MystHost, client: docker.DockerClient) -> HostState:
    container_id = status = image = running = tag = None
    with contextlib.suppress(docker.errors.NotFound):
        container = client.containers.get(host.container)
        container_id, status, image = container.id, container.status, container.attrs["Image"]
        if status == "running":
            running = _version(client, image)
    with contextlib.suppress(docker.errors.ImageNotFound):
        tag = _version(client, host.local_image)
    try:
        console = host.console_version()
    except requests.RequestException:
        console = None
    try:
        database: str | None = host.database()
    except OSError:
        database = None
    return HostState(
        container=container_id,
        status=status,
        image=image,
        running=running,
        console=console,
        tag=tag,
        database=database,
    )


def _version(client: docker.DockerClient, image: str) -> str | None:
    label = client.images.get(image).labels.get(VERSION_LABEL)
    return str(label) if label else None


def proxy_state(proxy: ProxyHost) -> ProxyState:
    done = proxy.run("active.sh")
    active = done.stdout.removeprefix("active: ").strip() if done.returncode == 0 else None
    sample = fetch("127.0.0.1", proxy.port, timeout=5)
    return ProxyState(active=active, served=sample.version if sample.error is None else None)
