"""The container engine, registry and console of a sandbox: folders on this machine, no daemon.

A sandbox (`deploy/sandbox/`) keeps what Docker would keep in an engine folder: image folders, a
tags file, a folder per container. Its host scripts write there in shell; these adapters read and
write the same files (layout: `deploy/sandbox/README.md`). Each serves only its own URLs
(`sandbox:///engine/folder`, `file:///registry/folder`, `file:///page.html`) and hands any other
to `fallback`, the real adapter, so one set of ports serves both kinds of instance.
"""

from __future__ import annotations

import codecs
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

from adapters.docker_engine import join_reference, split_reference
from adapters.http_check import MAX_BODY_BYTES
from bot.domain.errors import (
    ContainerEngineUnavailable,
    ContainerNotFound,
    HttpCheckFailed,
    ImageNotFound,
    RegistryUnavailable,
)
from bot.domain.inventory import DockerEndpoint, Registry
from bot.domain.ports import (
    ContainerEngine,
    ContainerEngineConnector,
    ContainerInfo,
    HttpCheck,
    HttpResponse,
    ImageInfo,
    ImageRegistry,
)

ENGINE_SCHEME = "sandbox"
# Docker's reference grammar, enough of it to refuse what the engine refuses. It also keeps names
# inside their folders: no component can be `..`.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(
    rf"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9-]+)*(?::[0-9]+)?/)?"
    rf"{_COMPONENT}(?:/{_COMPONENT})*"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_CONTAINER = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
_IMAGE_ID = re.compile(r"sha256:([0-9a-f]{64})")


def folder_of(url: str, scheme: str) -> Path | None:
    """The absolute folder or file a `scheme:///path` URL names, or None if it is not one."""
    parts = urlsplit(url)
    if parts.scheme != scheme or parts.netloc not in ("", "localhost") or not parts.path:
        return None
    path = Path(unquote(parts.path))
    return path if path.is_absolute() else None


class SandboxConnector:
    """Implements `ContainerEngineConnector` for `sandbox:///<engine folder>` endpoints."""

    def __init__(self, fallback: ContainerEngineConnector | None = None) -> None:
        self._fallback = fallback

    def connect(self, endpoint: DockerEndpoint) -> ContainerEngine:
        root = folder_of(endpoint.url, ENGINE_SCHEME)
        if root is None:
            if self._fallback is not None and urlsplit(endpoint.url).scheme != ENGINE_SCHEME:
                return self._fallback.connect(endpoint)
            raise ContainerEngineUnavailable(
                f"Could not connect to the engine at {endpoint.url}: only sandbox:///<folder> "
                "engines are served here. Write the sandbox engine's absolute folder as a URL.",
                host=endpoint.url,
            )
        engine = SandboxEngine(root, endpoint.url)
        engine.check("connect to")
        return engine


class SandboxEngine:
    """One sandbox engine folder, with the semantics and errors of `adapters.docker_engine`."""

    def __init__(self, root: Path, url: str) -> None:
        self._root = root
        self._url = url

    def check(self, action: str) -> None:
        """An engine folder that is gone is an engine that no longer answers."""
        if not (self._root / "images").is_dir() or not (self._root / "tags").is_file():
            raise ContainerEngineUnavailable(
                f"Could not {action} the sandbox engine at {self._url}: {self._root} is not an "
                "engine folder. Create the sandbox again (bot.sandbox.create_sandbox).",
                host=self._url,
            )

    def container(self, name: str) -> ContainerInfo:
        with self._errors(f"inspect container {name} on"):
            folder = self._root / "containers" / name
            if not _CONTAINER.fullmatch(name) or not folder.is_dir():
                raise ContainerNotFound(
                    f"No container named {name} on {self._url}. "
                    "Check the instance's container name, or whether it was removed.",
                    host=self._url,
                )
            image_id = _read(folder / "image")
            return ContainerInfo(
                name=name,
                status=_read(folder / "status") or "created",
                image_id=image_id,
                image_tags=self._info(image_id).tags,
                started_at=_read(folder / "started_at"),
            )

    def images(self, repository: str) -> list[ImageInfo]:
        with self._errors("list images on"):
            ids = {i for ref, i in self._tags().items() if split_reference(ref)[0] == repository}
            return sorted((self._info(i) for i in ids), key=lambda i: i.tags)

    def pull(self, image: str) -> ImageInfo:
        repository, tag = split_reference(image)
        with self._errors(f"pull {image} on"):
            if not (_REPOSITORY.fullmatch(repository) and _TAG.fullmatch(tag)):
                raise ImageNotFound(
                    f"The registry has no image {image} (invalid reference format). "
                    "Check the version against the registry's tags.",
                    host=self._url,
                )
            host, path = _registry_host(repository)
            registry = self._root / "registries" / host
            if not registry.is_dir():
                raise RegistryUnavailable(
                    f"{self._url} could not pull {image}: the registry {host} does not answer. "
                    "Check that the sandbox engine has that registry under registries/.",
                    host=self._url,
                )
            source = registry / path / tag
            image_id = _read(source / "id")
            if not _IMAGE_ID.fullmatch(image_id):
                raise ImageNotFound(
                    f"The registry has no image {image} (manifest unknown). "
                    "Check the version against the registry's tags.",
                    host=self._url,
                )
            target = self._root / "images" / image_id.removeprefix("sha256:")
            if not target.is_dir():
                partial = target.with_name(f".pull-{os.getpid()}-{target.name}")
                shutil.rmtree(partial, ignore_errors=True)
                shutil.copytree(source, partial)
                partial.rename(target)
            self._set_tag(join_reference(repository, tag), image_id)
            return self._info(image_id)

    def tag(self, source: str, target: str) -> ImageInfo:
        repository, tag = split_reference(target)
        with self._errors(f"tag {source} as {target} on"):
            image_id = self._resolve(source)
            if not (_REPOSITORY.fullmatch(repository) and _TAG.fullmatch(tag)):
                raise ImageNotFound(
                    f"{target} is not a valid image name (invalid reference format). "
                    "Use lowercase repository[:tag].",
                    host=self._url,
                )
            self._set_tag(join_reference(repository, tag), image_id)
            return self._info(image_id)

    def close(self) -> None:
        """Nothing is held open between calls."""

    # -- inside ---------------------------------------------------------------------------------

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """A missing engine folder, or any file error inside it, is an engine that failed."""
        self.check(action)
        try:
            yield
        except OSError as exc:
            raise ContainerEngineUnavailable(
                f"Could not {action} the sandbox engine at {self._url}: {exc}. "
                "Check the engine folder's files and permissions.",
                host=self._url,
            ) from exc

    def _tags(self) -> dict[str, str]:
        """Tag -> image id, from the tags file (`<repository>:<tag> <id>` per line)."""
        pairs = (line.split() for line in (self._root / "tags").read_text().splitlines())
        return {p[0]: p[1] for p in pairs if len(p) == 2}

    def _set_tag(self, ref: str, image_id: str) -> None:
        # Replaced whole (write, then rename), as the scripts do: no reader sees half a file.
        tags = {**self._tags(), ref: image_id}
        partial = self._root / f"tags.{os.getpid()}"
        partial.write_text("".join(f"{r} {i}\n" for r, i in tags.items()))
        partial.replace(self._root / "tags")

    def _resolve(self, ref: str) -> str:
        """Like the engine: a tag (`latest` when none), a full id, or an unambiguous id prefix."""
        tags = self._tags()
        wanted = join_reference(*split_reference(ref))
        if wanted in tags:
            return tags[wanted]
        bare = ref.removeprefix("sha256:")
        if re.fullmatch(r"[0-9a-f]+", bare):
            ids = [f"sha256:{p.name}" for p in (self._root / "images").iterdir()]
            matches = [i for i in ids if _IMAGE_ID.fullmatch(i) and i[7:].startswith(bare)]
            if len(matches) == 1:
                return matches[0]
        raise ImageNotFound(
            f"No image {ref} on {self._url}. Pull it first, or check `docker images`.",
            host=self._url,
        )

    def _info(self, image_id: str) -> ImageInfo:
        tags = tuple(sorted(r for r, i in self._tags().items() if i == image_id))
        created = _read(self._root / "images" / image_id.removeprefix("sha256:") / "created")
        return ImageInfo(id=image_id, tags=tags, created=created)


class SandboxRegistry:
    """Implements `ImageRegistry` for `file:///<registry folder>` registries: a repository is a
    folder, each of its tags a subfolder holding an image."""

    def __init__(self, fallback: ImageRegistry | None = None) -> None:
        self._fallback = fallback

    def tags(self, registry: Registry, repository: str) -> list[str]:
        root = folder_of(registry.url, "file")
        if root is None:
            if self._fallback is not None and urlsplit(registry.url).scheme != "file":
                return self._fallback.tags(registry, repository)
            raise RegistryUnavailable(
                f"The registry {registry.url} is not a sandbox registry (file:///<folder>). "
                "Check the URL in the config.",
                host=registry.url,
            )
        if not root.is_dir():
            raise RegistryUnavailable(
                f"The registry {registry.url} could not be reached: there is no folder {root}. "
                "Create the sandbox again (bot.sandbox.create_sandbox).",
                host=registry.url,
            )
        folder = root / repository.strip("/")
        if not _REPOSITORY.fullmatch(repository.strip("/")) or not folder.is_dir():
            return []  # like a registry's NAME_UNKNOWN: no such repository
        return sorted(p.name for p in folder.iterdir() if (p / "id").is_file())


class FileHttpCheck:
    """Implements `HttpCheck` for `file:///` pages, such as the console page a sandbox's start.sh
    writes. A missing page is a console where nothing answers; a page that is there is a 200."""

    def __init__(self, fallback: HttpCheck | None = None) -> None:
        self._fallback = fallback

    def get(self, url: str, *, timeout: float) -> HttpResponse:
        started = time.monotonic()
        path = folder_of(url, "file")
        if path is None and self._fallback is not None and urlsplit(url).scheme != "file":
            return self._fallback.get(url, timeout=timeout)
        if path is None:
            raise _nothing_answered(url, timeout, "not a file:/// URL")
        try:
            with path.open("rb") as page:
                data = page.read(MAX_BODY_BYTES)
        except OSError as exc:
            raise _nothing_answered(url, timeout, type(exc).__name__) from exc
        # Incremental decoding leaves out a character the size bound cut in half.
        body = codecs.getincrementaldecoder("utf-8")("replace").decode(data, final=False)
        return HttpResponse(url=url, status=200, body=body, elapsed=time.monotonic() - started)


def _nothing_answered(url: str, timeout: float, why: str) -> HttpCheckFailed:
    return HttpCheckFailed(
        f"Nothing answered at {url} within {timeout:g}s ({why}). "
        "Check that the console runs and the URL in the config is right.",
        host=url,
    )


def _registry_host(repository: str) -> tuple[str, str]:
    """`host[:port]/path` -> (host, path); names without a registry part live on Docker Hub."""
    first, _, rest = repository.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return "docker.io", repository


def _read(path: Path) -> str:
    """A one-line file's text; "" when it is not there."""
    try:
        return path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return ""
