"""The MyST Studio test host: images of the product, and homes with the vendor's scripts.

`build_images` builds one tiny image per version (`FROM scratch` + busybox, see `myst/image/`)
and pushes it to the test registry as `<registry>/myst-studio:<version>`. A `MystHost` is one
installation: a home under `var/hosts/` owned by the host account, with `bin/` (the vendor's
scripts, from `myst/bin/`), `etc/myst.env`, `data/`, `backup/` and `faults/`, and its own container,
local image name and console port, so many hosts share the one test dockerd.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import pwd
import re
import secrets
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from string import Template

import docker
import pytest
import requests

from tests.hostkit.services import ROOT, Services, free_port

MYST_DIR = Path(__file__).with_name("myst")
HOSTS_DIR = ROOT / "var" / "hosts"
BUSYBOX = Path("/bin/busybox")
VERSIONS = ("3.9.0.3", "3.9.1", "3.10.0")
VERSION_LABEL = "org.opencontainers.image.version"
SEED_ROWS = ("project=payments-platform", "pipeline=deploy-payments", "environment=prod")
_STARTED = re.compile(r"MyST Studio (\S+) (started( with \d+ error\(s\))?|failed to start)$", re.M)
_CONSOLE_VERSION = re.compile(r'<footer class="version">Version ([^<]*)</footer>')

_published: set[tuple[str, str]] = set()  # (repository, version) pushed in this session


def build_images(services: Services, versions: tuple[str, ...] | list[str] = VERSIONS) -> str:
    """Build and push `<registry>/myst-studio:<version>` for each version; returns the repository.
    Cheap when an image with the same content is already in the registry."""
    repository = f"{services.registry}/myst-studio"
    todo = [v for v in versions if (repository, v) not in _published]
    if not todo:
        return repository
    HOSTS_DIR.mkdir(parents=True, exist_ok=True)
    client = docker.DockerClient(base_url=services.docker_host, version="auto")
    # Another pytest process may build on the same dockerd at the same time.
    with (HOSTS_DIR / ".myst-images.lock").open("w") as lock, contextlib.closing(client):
        fcntl.flock(lock, fcntl.LOCK_EX)
        for version in todo:
            _publish(client, services.registry, repository, version)
            _published.add((repository, version))
    return repository


def _publish(client: docker.DockerClient, registry: str, repository: str, version: str) -> None:
    """Make `repository:version`, in the registry and as a local tag, the image of the current
    hostkit files. The registry is the truth: it is what hosts pull."""
    context = _context_digest(version)
    if _registry_image_id(registry, version) is not None:
        # A no-op when the image is here already; otherwise another checkout built it.
        published = client.images.pull(repository, tag=version)
        if published.labels.get("hostkit.context") == context:
            return
    previous = None
    with contextlib.suppress(docker.errors.ImageNotFound):
        previous = client.images.get(f"{repository}:{version}")
    image, _ = client.images.build(
        fileobj=_build_context(version, context), custom_context=True, rm=True
    )
    image.tag(repository, version)
    for line in client.images.push(repository, tag=version, stream=True, decode=True):
        if "error" in line:
            raise RuntimeError(f"pushing {repository}:{version} failed: {line['error']}")
    if previous is not None and previous.id != image.id:
        # The image of older hostkit files goes, unless some host still uses it.
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(previous.id)


def _registry_image_id(registry: str, version: str) -> str | None:
    """The image id (config digest) the registry serves for `myst-studio:<version>`."""
    response = requests.get(
        f"http://{registry}/v2/myst-studio/manifests/{version}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        timeout=10,
    )
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return str(response.json()["config"]["digest"])


def _image_files() -> list[Path]:
    return sorted((MYST_DIR / "image").iterdir())


def _context_digest(version: str) -> str:
    digest = hashlib.sha256(version.encode())
    for path in [*_image_files(), BUSYBOX]:
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def _build_context(version: str, context: str) -> io.BytesIO:
    """The build context as a tar: Dockerfile plus rootfs/ with busybox and its applet links."""
    buffer = io.BytesIO()
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], check=True, capture_output=True, text=True
    ).stdout.split()
    dockerfile = Template(_read("image/Dockerfile.template").decode())
    files = {
        "Dockerfile": (dockerfile.substitute(version=version, context=context).encode(), 0o644),
        "rootfs/bin/busybox": (BUSYBOX.read_bytes(), 0o755),
        "rootfs/etc/myst-studio/version": (f"{version}\n".encode(), 0o644),
        "rootfs/opt/myst-studio/entrypoint.sh": (_read("image/entrypoint.sh"), 0o755),
        "rootfs/opt/myst-studio/www/cgi-bin/index.cgi": (_read("image/index.cgi"), 0o755),
    }
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, mode in [("rootfs/tmp", 0o1777), ("rootfs/etc/myst-studio/faults", 0o755)]:
            entry = tarfile.TarInfo(name)
            entry.type, entry.mode = tarfile.DIRTYPE, mode
            tar.addfile(entry)
        for name, (data, mode) in files.items():
            entry = tarfile.TarInfo(name)
            entry.size, entry.mode = len(data), mode
            tar.addfile(entry, io.BytesIO(data))
        for applet in applets:
            if applet != "busybox":
                entry = tarfile.TarInfo(f"rootfs/bin/{applet}")
                entry.type, entry.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(entry)
    buffer.seek(0)
    return buffer


def _read(name: str) -> bytes:
    return (MYST_DIR / name).read_bytes()


class MystHost:
    """One simulated MyST Studio installation (not installed until `install`)."""

    def __init__(self, services: Services, repository: str, *, startup_delay: float = 0) -> None:
        self.services = services
        self.image_repository = repository
        self.id = secrets.token_hex(4)
        self.home = HOSTS_DIR / f"myst-{self.id}"
        self.container = f"myst-studio-{self.id}"
        self.local_image = f"myst-studio-{self.id}"
        self.console_port = free_port()
        self.user = pwd.getpwnam(services.host_user)
        self._docker = docker.DockerClient(base_url=services.docker_host, version="auto")
        for sub in ("bin", "lib", "etc", "data", "backup", "faults"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        for script in sorted((MYST_DIR / "bin").glob("*.sh")):
            shutil.copy(script, self.home / "bin" / script.name)
        shutil.copy(MYST_DIR / "lib" / "myst.sh", self.home / "lib" / "myst.sh")
        (self.home / "etc" / "myst.env").write_text(
            f"DOCKER_HOST={services.docker_host}\n"
            f"MYST_REGISTRY_IMAGE={repository}\n"
            f"MYST_CONTAINER={self.container}\n"
            f"MYST_LOCAL_IMAGE={self.local_image}\n"
            f"MYST_CONSOLE_PORT={self.console_port}\n"
            f"MYST_STARTUP_DELAY={startup_delay:g}\n"
        )
        self._chown(self.home, recursive=True)

    @property
    def console_url(self) -> str:
        return f"http://127.0.0.1:{self.console_port}/"

    def script(self, name: str) -> Path:
        return self.home / "bin" / name

    # -- acting as the host user ----------------------------------------------------------------

    def run(
        self, script: str, *args: str, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run `<home>/bin/<script>` as the host account (a non-zero exit is a result)."""
        return self.as_host_user([str(self.script(script)), *args], timeout=timeout)

    def as_host_user(
        self, argv: list[str], *, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.host_user_argv(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.host_env(),
        )

    def host_user_argv(self, argv: list[str]) -> list[str]:
        """`argv` run as the host account (with `host_env()` as its environment)."""
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"
        return [runuser, "-u", self.user.pw_name, "--", *argv]

    def host_env(self) -> dict[str, str]:
        """The environment of a login of the host account (docker CLI config in its own home)."""
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": self.user.pw_dir,
            "LANG": "C.UTF-8",
            "DOCKER_HOST": self.services.docker_host,
        }

    def install(self, version: str) -> None:
        """A fresh install: pull, tag, seed the database, start, wait until the console answers."""
        self.write_database(f"schema_version={version}\n" + "".join(f"{r}\n" for r in SEED_ROWS))
        for step in (("pull.sh", version), ("start.sh",)):
            done = self.run(*step)
            if done.returncode != 0:
                raise RuntimeError(f"{step} failed on {self.home}:\n{done.stdout}{done.stderr}")
        self.wait_started()

    def wait_started(self, timeout: float = 30) -> str:
        """Wait for the start-up's end line; returns the log. Raises if the start failed."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.logs()
            match = _STARTED.search(log)
            if match and "failed" in match.group(2):
                raise RuntimeError(f"MyST Studio failed to start on {self.home}:\n{log}")
            if match:
                return log
            if time.monotonic() > deadline:
                raise TimeoutError(f"MyST Studio did not finish starting on {self.home}:\n{log}")
            time.sleep(0.05)

    # -- looking at it --------------------------------------------------------------------------

    def logs(self) -> str:
        """The container's log so far ("" when there is no container)."""
        try:
            raw: bytes = self._docker.containers.get(self.container).logs()
        except docker.errors.NotFound:
            return ""
        return raw.decode(errors="replace")

    def console(self, timeout: float = 5) -> str:
        return requests.get(self.console_url, timeout=timeout).text

    def console_version(self) -> str | None:
        match = _CONSOLE_VERSION.search(self.console())
        return match.group(1) if match else None

    def running_version(self) -> str | None:
        """The version label of the image the running container was started from."""
        try:
            container = self._docker.containers.get(self.container)
        except docker.errors.NotFound:
            return None
        if container.status != "running":
            return None
        label = self._docker.images.get(container.attrs["Image"]).labels.get(VERSION_LABEL)
        return str(label) if label else None

    def database(self) -> str:
        return (self.home / "data" / "myst-studio.db").read_text()

    def write_database(self, text: str) -> None:
        self._write(self.home / "data" / "myst-studio.db", text)

    def backups(self) -> list[Path]:
        return sorted((self.home / "backup").glob("myst-studio-*.sql"))

    # -- fault switches -------------------------------------------------------------------------

    def fail_script(self, script: str, message: str = "") -> None:
        """Make `<script>` (e.g. `backup-database.sh`) exit 1 at once with `message` on stderr."""
        self._write(self.home / "faults" / f"fail-{script.removesuffix('.sh')}", message)

    def startup_errors(self, *lines: str) -> None:
        """The next start-up logs these as ERROR lines (one default line when none given)."""
        self._write(self.home / "faults" / "startup-error", "".join(f"{x}\n" for x in lines))

    def console_shows(self, version: str) -> None:
        """The console shows `version` instead of the real one (at once, no restart needed)."""
        self._write(self.home / "faults" / "console-version", f"{version}\n")

    def clear_faults(self) -> None:
        for switch in (self.home / "faults").iterdir():
            switch.unlink()

    # -- inside ---------------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Remove the container, the local image tag and the home."""
        with contextlib.suppress(docker.errors.NotFound):
            self._docker.containers.get(self.container).remove(force=True)
        with contextlib.suppress(docker.errors.ImageNotFound):
            self._docker.images.remove(self.local_image, noprune=True)
        self._docker.close()
        shutil.rmtree(self.home, ignore_errors=True)

    def _write(self, path: Path, text: str) -> None:
        path.write_text(text)
        self._chown(path)

    def _chown(self, path: Path, *, recursive: bool = False) -> None:
        for item in [path, *(path.rglob("*") if recursive else ())]:
            shutil.chown(item, self.user.pw_uid, self.user.pw_gid)


@pytest.fixture(scope="session")
def myst_images(services: Services) -> str:
    """The registry repository holding MyST Studio 3.9.0.3, 3.9.1 and 3.10.0."""
    return build_images(services, VERSIONS)


@pytest.fixture
def myst_host_factory(services: Services, myst_images: str) -> Iterator[Callable[..., MystHost]]:
    """Makes `MystHost`s (not installed yet); all are removed after the test."""
    hosts: list[MystHost] = []

    def make(**options: float) -> MystHost:
        hosts.append(MystHost(services, myst_images, **options))
        return hosts[-1]

    yield make
    for host in hosts:
        host.cleanup()


@pytest.fixture
def myst_host(myst_host_factory: Callable[..., MystHost]) -> MystHost:
    """A MyST Studio host installed at 3.9.0.3, running, console answering."""
    host = myst_host_factory()
    host.install("3.9.0.3")
    return host
