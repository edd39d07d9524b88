"""The Docker Engine API through the docker SDK: inspect containers, list, pull and tag images.

Every docker or requests exception is translated here into the domain's errors, with a message that
names the endpoint and what to do. The endpoint rules (which URLs we accept, when TLS is required)
live in `check_endpoint` so the in-memory twin applies exactly the same ones.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import docker
import requests
from docker import errors as docker_errors
from docker.tls import TLSConfig

from bot.domain.errors import (
    ContainerEngineUnavailable,
    ContainerNotFound,
    ImageNotFound,
    RegistryUnavailable,
)
from bot.domain.inventory import DockerEndpoint
from bot.domain.ports import ContainerInfo, ImageInfo

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def check_endpoint(endpoint: DockerEndpoint) -> None:
    """Refuse endpoints we will not talk to: unknown schemes, missing TLS files, and plain TCP to
    another machine (the Docker API gives root on that machine to anyone who can reach it)."""
    parts = urlsplit(endpoint.url)
    if parts.scheme == "unix":
        if not parts.path:
            _refuse(endpoint, "has no socket path. Write it as unix:///var/run/docker.sock.")
        return
    if parts.scheme != "tcp":
        _refuse(endpoint, "is not a unix:// or tcp:// URL. Use one of those forms.")
    if not parts.hostname or parts.port is None:
        _refuse(endpoint, "needs a host and a port, e.g. tcp://docker.example.com:2376.")
    for label, path in (("tls_ca", endpoint.tls_ca), ("tls_cert", endpoint.tls_cert)):
        if path is not None and not Path(path).is_file():
            _refuse(endpoint, f"names {label} {path}, which is not a readable file. Fix the path.")
    if endpoint.tls_key is not None and not Path(endpoint.tls_key).is_file():
        _refuse(endpoint, f"names tls_key {endpoint.tls_key}, which is not a file. Fix the path.")
    if (endpoint.tls_cert is None) != (endpoint.tls_key is None):
        _refuse(endpoint, "needs both tls_cert and tls_key (or neither). Set the missing one.")
    if not _uses_tls(endpoint) and not _is_loopback(parts.hostname or ""):
        _refuse(
            endpoint,
            "is plain TCP to another machine: anyone on the network could drive that engine. "
            "Set tls_ca (and tls_cert/tls_key) for it, or reach it through a loopback tunnel.",
        )


def _uses_tls(endpoint: DockerEndpoint) -> bool:
    return endpoint.tls_ca is not None or endpoint.tls_cert is not None


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refuse(endpoint: DockerEndpoint, problem: str) -> NoReturn:
    raise ContainerEngineUnavailable(f"Docker endpoint {endpoint.url} {problem}", host=endpoint.url)


def split_reference(image: str) -> tuple[str, str]:
    """`repo[:tag]` -> (repo, tag), tag `latest` when absent; `repo@digest` -> (repo, digest).
    A registry's port is not a tag."""
    if "@" in image:
        name, _, digest = image.partition("@")
        return name, digest
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return image, "latest"
    return name, tag


def join_reference(repository: str, tag: str) -> str:
    return f"{repository}@{tag}" if ":" in tag else f"{repository}:{tag}"


def _repository_of(tag: str) -> str:
    return split_reference(tag)[0]


class DockerConnector:
    """Opens a `DockerEngine` for an endpoint and checks that the engine answers."""

    def connect(self, endpoint: DockerEndpoint) -> DockerEngine:
        check_endpoint(endpoint)
        with _engine_errors(endpoint.url, "connect to"):
            # version="auto" asks the engine which API version it speaks (and so checks it
            # answers); a fixed newer version would be refused by older engines.
            client = docker.DockerClient(
                base_url=endpoint.url,
                version="auto",
                timeout=endpoint.timeout,
                tls=_tls(endpoint),
            )
        engine = DockerEngine(client, endpoint.url)
        try:
            with _engine_errors(endpoint.url, "ping"):
                client.ping()
        except ContainerEngineUnavailable:
            engine.close()
            raise
        return engine


def _tls(endpoint: DockerEndpoint) -> TLSConfig | bool:
    if not _uses_tls(endpoint):
        return False
    client_cert = (str(endpoint.tls_cert), str(endpoint.tls_key)) if endpoint.tls_cert else None
    ca = str(endpoint.tls_ca) if endpoint.tls_ca else None
    # The server is always verified: against tls_ca, or the system's CAs without it.
    return TLSConfig(client_cert=client_cert, ca_cert=ca, verify=True)


class DockerEngine:
    """One Docker Engine reached through the docker SDK; keep it open for the length of a run."""

    def __init__(self, client: docker.DockerClient, url: str) -> None:
        self._client = client
        self._url = url
        self._closed = False

    def container(self, name: str) -> ContainerInfo:
        with _engine_errors(self._url, f"inspect container {name} on"):
            try:
                attrs: dict[str, Any] = self._client.api.inspect_container(name)
            except docker_errors.NotFound as exc:
                raise ContainerNotFound(
                    f"No container named {name} on {self._url}. "
                    "Check the instance's container name, or whether it was removed.",
                    host=self._url,
                ) from exc
            state = attrs.get("State") or {}
            image_id = str(attrs.get("Image", ""))
            return ContainerInfo(
                name=str(attrs.get("Name", name)).lstrip("/"),
                status=str(state.get("Status", "unknown")),
                image_id=image_id,
                image_tags=self._tags_now(image_id),
                started_at=str(state.get("StartedAt", "")),
            )

    def _tags_now(self, image_id: str) -> tuple[str, ...]:
        # The container keeps its image id; which tags still point there changes with every
        # re-tag, so ask the engine now instead of trusting the container's config.
        try:
            attrs: dict[str, Any] = self._client.api.inspect_image(image_id)
        except docker_errors.NotFound:
            return ()
        return tuple(sorted(attrs.get("RepoTags") or ()))

    def images(self, repository: str) -> list[ImageInfo]:
        with _engine_errors(self._url, "list images on"):
            summaries: list[dict[str, Any]] = self._client.api.images()
        found = []
        for summary in summaries:
            tags = tuple(sorted(t for t in summary.get("RepoTags") or () if t != "<none>:<none>"))
            if any(_repository_of(t) == repository for t in tags):
                found.append(_image_info(summary, tags))
        return sorted(found, key=lambda i: i.tags)

    def pull(self, image: str) -> ImageInfo:
        repository, tag = split_reference(image)
        reference = join_reference(repository, tag)
        with _engine_errors(self._url, f"pull {image} on"):
            try:
                progress = self._client.api.pull(repository, tag=tag, stream=True, decode=True)
                # Failures after the first byte (a layer, the registry's auth) only show up as
                # an `error` entry in the progress stream, with HTTP status 200.
                for entry in progress:
                    if isinstance(entry, dict) and entry.get("error"):
                        self._pull_failed(image, str(entry["error"]), None)
            except docker_errors.APIError as exc:
                self._pull_failed(image, str(exc.explanation or exc), exc)
            return self._inspect_image(reference)

    def _pull_failed(self, image: str, reason: str, exc: docker_errors.APIError | None) -> NoReturn:
        status = exc.status_code if exc is not None else None
        if status in (400, 404) or "manifest unknown" in reason or "not found" in reason:
            raise ImageNotFound(
                f"The registry has no image {image} ({reason}). "
                "Check the version against the registry's tags.",
                host=self._url,
            ) from exc
        # The engine reports what went wrong talking to the registry as a server error.
        raise RegistryUnavailable(
            f"{self._url} could not pull {image}: {reason}. "
            "Check that the registry is reachable from that host and the credentials are valid.",
            host=self._url,
        ) from exc

    def tag(self, source: str, target: str) -> ImageInfo:
        repository, tag = split_reference(target)
        with _engine_errors(self._url, f"tag {source} as {target} on"):
            info = self._inspect_image(source)
            try:
                self._client.api.tag(info.id, repository, tag)
            except docker_errors.APIError as exc:
                if "invalid reference" not in str(exc.explanation or ""):
                    raise
                raise ImageNotFound(
                    f"{target} is not a valid image name ({exc.explanation}). "
                    "Use lowercase repository[:tag].",
                    host=self._url,
                ) from exc
            return self._inspect_image(info.id)

    def _inspect_image(self, ref: str) -> ImageInfo:
        try:
            attrs: dict[str, Any] = self._client.api.inspect_image(ref)
        except docker_errors.APIError as exc:
            if exc.status_code not in (400, 404):  # 400: not even a valid image name
                raise
            raise ImageNotFound(
                f"No image {ref} on {self._url}. Pull it first, or check `docker images`.",
                host=self._url,
            ) from exc
        return _image_info(attrs, tuple(sorted(attrs.get("RepoTags") or ())))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._client.close()


def _image_info(attrs: dict[str, Any], tags: tuple[str, ...]) -> ImageInfo:
    return ImageInfo(id=str(attrs.get("Id", "")), tags=tags, created=_created(attrs.get("Created")))


def _created(value: object) -> str:
    """Lists give epoch seconds, inspect gives RFC 3339 with nanoseconds: one form for both."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = str(value or "")
    return f"{text[:19]}Z" if len(text) >= 19 else text


@contextmanager
def _engine_errors(url: str, action: str) -> Iterator[None]:
    """Whatever the SDK or requests raise while talking to the engine becomes
    `ContainerEngineUnavailable`; the domain's own errors pass through untouched."""
    try:
        yield
    except (docker_errors.DockerException, requests.exceptions.RequestException) as exc:
        detail = getattr(exc, "explanation", None) or str(exc) or type(exc).__name__
        raise ContainerEngineUnavailable(
            f"Could not {action} the Docker engine at {url}: {detail}. "
            "Check that dockerd runs there and this account may use its socket.",
            host=url,
        ) from exc
