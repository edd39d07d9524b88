"""In-memory twins of the Docker Engine and of image registries.

`MemoryRegistry` holds what was pushed; `MemoryContainerEngine` pulls from it, tags and runs
containers in memory; `MemoryDockerConnector` hands out engines by endpoint URL. They raise the same
domain errors as `adapters.docker_engine` and `adapters.registry` in the same situations (the
contract suites in `tests/contract/` hold both to that).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

from adapters.docker_engine import check_endpoint, join_reference, split_reference
from bot.domain.errors import (
    ContainerEngineUnavailable,
    ContainerNotFound,
    ImageNotFound,
    RegistryUnavailable,
)
from bot.domain.inventory import DockerEndpoint, Registry
from bot.domain.ports import ContainerInfo, ImageInfo

# Docker's reference grammar, enough of it to refuse what the engine refuses.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9-]+)*(?::[0-9]+)?/)"
_REPOSITORY = re.compile(rf"{_DOMAIN}?{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def _valid(repository: str, tag: str) -> bool:
    tag_ok = _DIGEST.fullmatch(tag) if ":" in tag else _TAG.fullmatch(tag)
    return bool(_REPOSITORY.fullmatch(repository) and tag_ok)


def registry_host(repository: str) -> tuple[str, str]:
    """`host[:port]/path` -> (host, path); names without a registry part live on Docker Hub."""
    first, _, rest = repository.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return "docker.io", repository


class MemoryRegistry:
    """Implements `ImageRegistry` over registries held in memory, and serves pulls for
    `MemoryContainerEngine`. A registry exists (answers) once something was pushed to it."""

    def __init__(self) -> None:
        self._tags: dict[str, dict[str, dict[str, str]]] = {}  # host -> path -> tag -> image id
        self._down: set[str] = set()
        self._logins: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()

    def push(self, image: str, image_id: str | None = None) -> str:
        """Publish `host[:port]/path:tag`; returns the image id (derived from the name if none)."""
        repository, tag = split_reference(image)
        host, path = registry_host(repository)
        image_id = image_id or "sha256:" + hashlib.sha256(image.encode()).hexdigest()
        with self._lock:
            self._tags.setdefault(host, {}).setdefault(path, {})[tag] = image_id
        return image_id

    def set_reachable(self, host: str, reachable: bool) -> None:
        """Take a registry (`host[:port]`) off the network, or bring it back."""
        with self._lock:
            if reachable:
                self._down.discard(host)
                self._tags.setdefault(host, {})
            else:
                self._down.add(host)

    def require_login(self, host: str, username: str, password: str) -> None:
        with self._lock:
            self._logins[host] = (username, password)

    def tags(self, registry: Registry, repository: str) -> list[str]:
        host = urlsplit(registry.url).netloc.rpartition("@")[2]
        with self._lock:
            self._check(host, registry.url)
            required = self._logins.get(host)
            if required and required != (registry.username, registry.password):
                raise RegistryUnavailable(
                    f"The registry {registry.url} refused our credentials (HTTP 401). "
                    "Check the username and password configured for it.",
                    host=registry.url,
                )
            return sorted(self._tags[host].get(repository.strip("/"), {}))

    def resolve(self, image: str, *, engine: str) -> str:
        """The image id a pull of `image` gets, or the error the engine would report."""
        repository, tag = split_reference(image)
        host, path = registry_host(repository)
        with self._lock:
            if host in self._down or host not in self._tags:
                raise RegistryUnavailable(
                    f"{engine} could not pull {image}: the registry {host} does not answer. "
                    "Check that the registry is reachable from that host and the credentials "
                    "are valid.",
                    host=engine,
                )
            image_id = self._tags[host].get(path, {}).get(tag)
        if image_id is None:
            raise ImageNotFound(
                f"The registry has no image {image} (manifest unknown). "
                "Check the version against the registry's tags.",
                host=engine,
            )
        return image_id

    def _check(self, host: str, url: str) -> None:
        if host in self._down or host not in self._tags:
            raise RegistryUnavailable(
                f"The registry {url} could not be reached. "
                "Check the URL and that the registry runs and is reachable from the bot.",
                host=url,
            )


@dataclass(kw_only=True)
class _Container:
    image_id: str
    status: str
    started_at: str


@dataclass(kw_only=True)
class _Image:
    created: str
    tags: set[str] = field(default_factory=set)


class MemoryContainerEngine:
    """Implements `ContainerEngine` in memory. Setup methods (`add_image`, `run_container`,
    `set_available`, ...) put it in the state a test needs."""

    def __init__(self, registry: MemoryRegistry | None = None, *, url: str = "memory://") -> None:
        self.url = url
        self._registry = registry or MemoryRegistry()
        self._images: dict[str, _Image] = {}
        self._containers: dict[str, _Container] = {}
        self._available = True
        self.closed = False
        self._lock = threading.RLock()

    # -- setup ----------------------------------------------------------------------------------

    def add_image(self, *tags: str, image_id: str | None = None) -> str:
        """A local image with these tags (moved off any other image); returns its id."""
        image_id = image_id or "sha256:" + hashlib.sha256(repr(tags).encode()).hexdigest()
        with self._lock:
            self._images.setdefault(image_id, _Image(created=_now()))
            for tag in tags:
                self._point(join_reference(*split_reference(tag)), image_id)
        return image_id

    def run_container(self, name: str, image: str, *, status: str = "running") -> None:
        with self._lock:
            self._containers[name] = _Container(
                image_id=self._resolve(image).id, status=status, started_at=_now()
            )

    def set_container_status(self, name: str, status: str) -> None:
        with self._lock:
            self._containers[name].status = status

    def remove_container(self, name: str) -> None:
        with self._lock:
            self._containers.pop(name, None)

    @property
    def available(self) -> bool:
        return self._available

    def set_available(self, available: bool) -> None:
        """An unavailable engine fails every call as if dockerd stopped answering."""
        self._available = available

    # -- ContainerEngine ------------------------------------------------------------------------

    def container(self, name: str) -> ContainerInfo:
        with self._lock:
            self._check(f"inspect container {name} on")
            found = self._containers.get(name)
            if found is None:
                raise ContainerNotFound(
                    f"No container named {name} on {self.url}. "
                    "Check the instance's container name, or whether it was removed.",
                    host=self.url,
                )
            return ContainerInfo(
                name=name,
                status=found.status,
                image_id=found.image_id,
                image_tags=tuple(sorted(self._images[found.image_id].tags)),
                started_at=found.started_at,
            )

    def images(self, repository: str) -> list[ImageInfo]:
        with self._lock:
            self._check("list images on")
            found = [
                self._info(image_id)
                for image_id, image in self._images.items()
                if any(split_reference(t)[0] == repository for t in image.tags)
            ]
        return sorted(found, key=lambda i: i.tags)

    def pull(self, image: str) -> ImageInfo:
        repository, tag = split_reference(image)
        with self._lock:
            self._check(f"pull {image} on")
            if not _valid(repository, tag):
                raise ImageNotFound(
                    f"The registry has no image {image} (invalid reference format). "
                    "Check the version against the registry's tags.",
                    host=self.url,
                )
            image_id = self._registry.resolve(image, engine=self.url)
            self._images.setdefault(image_id, _Image(created=_now()))
            if ":" not in tag:  # a pull by digest adds no tag
                self._point(join_reference(repository, tag), image_id)
            return self._info(image_id)

    def tag(self, source: str, target: str) -> ImageInfo:
        repository, tag = split_reference(target)
        with self._lock:
            self._check(f"tag {source} as {target} on")
            info = self._resolve(source)
            if not _valid(repository, tag) or ":" in tag:
                raise ImageNotFound(
                    f"{target} is not a valid image name (invalid reference format). "
                    "Use lowercase repository[:tag].",
                    host=self.url,
                )
            self._point(join_reference(repository, tag), info.id)
            return self._info(info.id)

    def close(self) -> None:
        self.closed = True

    # -- inside ---------------------------------------------------------------------------------

    def _check(self, action: str) -> None:
        if not self._available:
            raise ContainerEngineUnavailable(
                f"Could not {action} the Docker engine at {self.url}: connection refused. "
                "Check that dockerd runs there and this account may use its socket.",
                host=self.url,
            )

    def _point(self, tag: str, image_id: str) -> None:
        for image in self._images.values():
            image.tags.discard(tag)
        self._images[image_id].tags.add(tag)

    def _resolve(self, ref: str) -> ImageInfo:
        """Like the engine: a tag (`latest` when none), a full id, or an unambiguous id prefix."""
        repository, tag = split_reference(ref)
        wanted = join_reference(repository, tag)
        for image_id, image in self._images.items():
            if wanted in image.tags:
                return self._info(image_id)
        bare = ref.removeprefix("sha256:")
        is_hex = re.fullmatch(r"[0-9a-f]+", bare) is not None
        matches = [i for i in self._images if is_hex and i.removeprefix("sha256:").startswith(bare)]
        if len(matches) == 1:
            return self._info(matches[0])
        raise ImageNotFound(
            f"No image {ref} on {self.url}. Pull it first, or check `docker images`.",
            host=self.url,
        )

    def _info(self, image_id: str) -> ImageInfo:
        image = self._images[image_id]
        return ImageInfo(id=image_id, tags=tuple(sorted(image.tags)), created=image.created)


class MemoryDockerConnector:
    """Implements `ContainerEngineConnector`: endpoint URL -> the engine registered for it.
    Applies the real connector's endpoint rules first; an unknown URL does not answer."""

    def __init__(self, engines: Mapping[str, MemoryContainerEngine] | None = None) -> None:
        self.engines: dict[str, MemoryContainerEngine] = dict(engines or {})

    def connect(self, endpoint: DockerEndpoint) -> MemoryContainerEngine:
        check_endpoint(endpoint)
        engine = self.engines.get(endpoint.url)
        if engine is None or not engine.available:
            raise ContainerEngineUnavailable(
                f"Could not connect to the Docker engine at {endpoint.url}: nothing answers. "
                "Check that dockerd runs there and this account may use its socket.",
                host=endpoint.url,
            )
        engine.closed = False
        return engine


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
