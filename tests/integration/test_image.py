"""The deployment files: the container image built and run, the compose file and the systemd unit.

No image can be pulled here, so the image is built on a Debian 12 base made from Debian's mirror by
`deploy/base-image.sh` (in place of python:3.11-slim-bookworm), on the test Docker Engine, with
`--network host` for pip, which reaches this machine's index through this machine's extra CAs.
The first build takes minutes (debootstrap, then pip); later ones reuse the base and the layers.
The compose file and the unit cannot be run here (no compose plugin, no systemd as PID 1): they are
read as their tools read them, and the unit goes through `systemd-analyze verify`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml
from docker.models.containers import Container
from sqlalchemy import text

from adapters.sql_engine import create_store_engine
from tests.hostkit.databases import postgres_schema
from tests.hostkit.services import Services, free_port
from tests.hostkit.slackbot import SIGNING_SECRET, wait_for
from tests.slackemu import requests as slack
from tests.slackemu.server import SlackEmulator

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BASE = "upgrade-bot-base:bookworm"  # cached in the test engine: `docker rmi` it to rebuild
IMAGE = "upgrade-bot:test"
UID = 10001
SITE_CAS = Path("/usr/local/share/ca-certificates")  # where Debian keeps locally added CAs
FIRST_BUILD_SECONDS = 1200

# Whichever test comes first builds the image (the base, then pip): give each room for it.
pytestmark = pytest.mark.timeout(FIRST_BUILD_SECONDS + 300)


# -- the image ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(services: Services) -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=services.docker_host, timeout=300)
    yield client
    client.close()


@pytest.fixture(scope="module")
def image(engine: docker.DockerClient, services: Services) -> str:
    """deploy/Dockerfile built on the local base; times and size are printed (pytest -s)."""
    started = time.monotonic()
    made = subprocess.run(
        [str(DEPLOY / "base-image.sh"), BASE],
        env={**os.environ, "DOCKER_HOST": services.docker_host},
        capture_output=True,
        text=True,
        timeout=FIRST_BUILD_SECONDS,
    )
    assert made.returncode == 0, f"base-image.sh failed:\n{made.stdout}\n{made.stderr}"
    base_seconds = time.monotonic() - started
    previous = _image_id(engine, IMAGE)
    started = time.monotonic()
    log = _build(engine)
    build_seconds = time.monotonic() - started
    built = engine.images.get(IMAGE)
    if previous and previous != built.id:  # the last run's image, now untagged; its layers stay
        with contextlib.suppress(docker.errors.APIError):  # still used: left for the next run
            engine.images.remove(previous)
    cached = sum("Using cache" in line for line in log)
    print(
        f"\nbase image {BASE}: {base_seconds:.1f}s ({made.stdout.strip()})"
        f"\nimage {IMAGE}: built in {build_seconds:.1f}s ({cached} steps from cache), "
        f"{built.attrs['Size'] / 1e6:.0f} MB"
    )
    return IMAGE


def _image_id(engine: docker.DockerClient, name: str) -> str | None:
    try:
        return str(engine.images.get(name).id)
    except docker.errors.ImageNotFound:
        return None


def _build(engine: docker.DockerClient) -> list[str]:
    log: list[str] = []
    for chunk in engine.api.build(
        path=str(ROOT),
        dockerfile="deploy/Dockerfile",
        tag=IMAGE,
        buildargs={"BASE_IMAGE": BASE, **pip_build_args()},
        network_mode="host",  # dockerd runs with --bridge=none: RUN steps need the host's network
        rm=True,
        forcerm=True,
        decode=True,
        timeout=FIRST_BUILD_SECONDS,
    ):
        if "error" in chunk:
            tail = "".join(log[-40:])
            raise AssertionError(f"docker build failed: {chunk['error']}\n{tail}")
        log.append(chunk.get("stream", ""))
    return log


def pip_build_args() -> dict[str, str]:
    """The index and CAs pip uses on this machine, for pip inside the build (see deploy/Dockerfile).

    Only an http(s) index is passed on (a file:// one is not in the build's reach); the CAs are
    those added to this machine's store, which the base image lacks (a TLS-inspecting proxy).
    """
    args: dict[str, str] = {}
    index = os.environ.get("PIP_INDEX_URL") or _pip_config("global.index-url")
    if index.startswith(("http://", "https://")):
        args["PIP_INDEX_URL"] = index
    cas = sorted(SITE_CAS.rglob("*.crt")) if SITE_CAS.is_dir() else []
    if cas:
        args["BUILD_CA_CERTS"] = "\n".join(ca.read_text().strip() for ca in cas)
    return args


def _pip_config(key: str) -> str:
    found = subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", key], capture_output=True, text=True
    )
    return found.stdout.strip() if found.returncode == 0 else ""


def run(
    engine: docker.DockerClient, *command: str, network: str = "none", **options: Any
) -> tuple[int, str]:
    """Run the image to its end; (exit code, stdout and stderr)."""
    container = engine.containers.create(IMAGE, list(command), network_mode=network, **options)
    try:
        container.start()
        status = container.wait(timeout=180)["StatusCode"]
        return status, container.logs().decode(errors="replace")
    finally:
        container.remove(v=True, force=True)


@pytest.fixture
def volume(engine: docker.DockerClient) -> Iterator[str]:
    """A new named volume for /app/var, removed afterwards."""
    created = engine.volumes.create(f"upgrade-bot-test-{uuid.uuid4().hex[:8]}")
    yield str(created.name)
    created.remove(force=True)


@pytest.mark.services
def test_the_image_runs_the_bot_unprivileged_and_carries_no_dev_tools(
    engine: docker.DockerClient, image: str
):
    config = engine.images.get(image).attrs["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["python", "-m", "bot"]
    assert config["Cmd"] == ["serve", "--host", "0.0.0.0", "--port", "3000"]
    assert config["WorkingDir"] == "/app"
    assert "3000/tcp" in config["ExposedPorts"]
    assert "/app/var" in config["Volumes"]
    assert config["Healthcheck"]["Test"][0] == "CMD"

    status, out = run(engine, "-u", entrypoint=["id"])
    assert (status, out.strip()) == (0, str(UID))
    tools = ("pip", "setuptools", "pytest", "ruff", "mypy")
    probe = f"import importlib.util as u; print(sorted(m for m in {tools} if u.find_spec(m)))"
    status, out = run(engine, "-c", probe, entrypoint=["python"])
    assert (status, out.strip()) == (0, "[]")
    # The code is the bot's to read, not to change.
    status, out = run(engine, "-c", "touch /app/bot/x || echo read-only", entrypoint=["sh"])
    assert "read-only" in out


@pytest.mark.services
def test_the_demo_passes_in_the_image_with_no_network(engine: docker.DockerClient, image: str):
    status, out = run(engine, "demo")
    assert status == 0, out
    assert "Demo passed" in out


@pytest.mark.services
def test_a_sandbox_is_laid_out_and_checked_in_the_data_volume(
    engine: docker.DockerClient, image: str, volume: str
):
    data = {"volumes": {volume: {"bind": "/app/var", "mode": "rw"}}}
    status, out = run(engine, "sandbox", **data)
    assert status == 0, out
    status, out = run(
        engine, "check", environment={"BOT_CONFIG": "/app/var/sandbox/config.yaml"}, **data
    )
    assert status == 0, out
    assert "/app/var/sandbox/config.yaml: 1 environment(s), 1 instance(s)" in out
    assert "valid." in out


@pytest.mark.services
def test_db_upgrade_creates_the_default_sqlite_database_in_the_volume(
    engine: docker.DockerClient, image: str, volume: str
):
    data = {"volumes": {volume: {"bind": "/app/var", "mode": "rw"}}}
    first = run(engine, "db", "upgrade", **data)
    again = run(engine, "db", "upgrade", **data)
    assert first[0] == 0, first[1]
    assert re.search(r"The database is at revision \w+\.", first[1])
    assert again == first
    status, out = run(engine, "-c", "stat -c '%u %n' /app/var/bot.db", entrypoint=["sh"], **data)
    assert (status, out.strip()) == (0, f"{UID} /app/var/bot.db")


@pytest.mark.services
def test_db_upgrade_migrates_postgresql(engine: docker.DockerClient, image: str, services):
    with postgres_schema(services, prefix="image") as url:
        status, out = run(
            engine, "db", "upgrade", network="host", environment={"DATABASE_URL": url}
        )
        assert status == 0, out
        revision = re.search(r"The database is at revision (\w+)\.", out)
        assert revision, out
        store = create_store_engine(url)
        with store.connect() as connection:
            found = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        store.dispose()
        assert found == revision.group(1)


@contextlib.contextmanager
def serve_sandbox(
    engine: docker.DockerClient,
    image: str,
    volume: str,
    environment: dict[str, str],
    port_option: str = "--port",
) -> Iterator[tuple[Container, str]]:
    """The image serving a sandbox with `environment` (on top of its config), locked down as
    deploy/compose.yaml runs it; yields the container and its base URL."""
    data = {"volumes": {volume: {"bind": "/app/var", "mode": "rw"}}}
    for command in (["sandbox"], ["db", "upgrade"]):
        status, out = run(engine, *command, **data)
        assert status == 0, out
    port = free_port()
    port_words = [f"--port={port}"] if port_option == "--port=" else ["--port", str(port)]
    container = engine.containers.run(
        image,
        ["serve", "--host", "127.0.0.1", *port_words],
        detach=True,
        network_mode="host",
        environment={"BOT_CONFIG": "/app/var/sandbox/config.yaml", **environment},
        read_only=True,
        tmpfs={"/tmp": ""},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        healthcheck={"interval": 1_000_000_000, "start_period": 0},  # the image's test, sooner
        **data,
    )
    try:
        yield container, f"http://127.0.0.1:{port}"
    finally:
        container.remove(v=True, force=True)


@pytest.fixture
def serving(
    engine: docker.DockerClient, image: str, volume: str, slack_api: SlackEmulator
) -> Iterator[tuple[Container, str]]:
    """The image serving a sandbox over HTTP against the Slack emulator."""
    environment = {
        "SLACK_BOT_TOKEN": slack_api.token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack_api.url,
    }
    with serve_sandbox(engine, image, volume, environment) as served:
        yield served


@pytest.mark.services
def test_serve_answers_healthz_and_signed_slack_requests(
    serving: tuple[Container, str], slack_api: SlackEmulator
):
    container, base = serving
    wait_for("/healthz", lambda: _healthz(container, base), timeout=60)
    assert slack_api.calls("auth.test"), "Bolt checks its token at start"
    wait_for("the image's health check", lambda: _health(container) == "healthy", timeout=60)

    sender = slack.SlackSender(f"{base}/slack/events", SIGNING_SECRET)
    status, _, body = sender.send(*slack.url_verification("challenge-from-slack"))
    assert (status, b"challenge-from-slack" in body) == (200, True)
    assert sender.send(*slack.slash_command("help", "U0ALICE01", "C0UPGRADE"))[0] == 200
    bad = sender.send(*slack.slash_command("help", "U0ALICE01", "C0UPGRADE"), bad_signature=True)
    assert bad[0] == 401

    # The image's STOPSIGNAL (SIGINT) reaches Python as PID 1 and the bot shuts down cleanly;
    # an ignored signal would end in SIGKILL (137) after the timeout.
    container.stop(timeout=30)
    container.reload()
    logs = container.logs().decode(errors="replace")
    assert container.attrs["State"]["ExitCode"] == 0, logs
    assert slack_api.token not in logs
    assert SIGNING_SECRET not in logs


def _healthz(container: Container, base: str) -> bool:
    container.reload()
    if container.status == "exited":
        raise AssertionError(f"serve exited: {container.logs().decode(errors='replace')}")
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=1) as response:  # noqa: S310
            return response.status == 200
    except OSError:
        return False


def _health(container: Container) -> str:
    container.reload()
    return str(container.attrs["State"].get("Health", {}).get("Status", ""))


# -- the compose file -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_runs_migrate_then_the_bot_once_postgres_is_healthy(compose: dict[str, Any]):
    services = compose["services"]
    assert set(services) == {"postgres", "migrate", "bot"}
    postgres, migrate, bot = services["postgres"], services["migrate"], services["bot"]
    assert postgres["image"] == "postgres:15"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert migrate["command"] == ["db", "upgrade"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert bot["command"][0] == "serve"
    assert bot["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "migrate": {"condition": "service_completed_successfully"},
    }
    assert postgres["restart"] == bot["restart"] == "unless-stopped"
    for service in (migrate, bot):
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).is_file()


def test_compose_takes_secrets_from_env_and_mounts_config_and_keys_read_only(
    compose: dict[str, Any],
):
    bot = compose["services"]["bot"]
    assert bot["env_file"] == ".env"
    assert bot["environment"]["BOT_CONFIG"] == "/etc/upgrade-bot/config.yaml"
    mounts = {m.split(":")[1]: m for m in bot["volumes"]}
    assert mounts["/etc/upgrade-bot/config.yaml"].endswith(":ro")
    assert mounts["/etc/upgrade-bot/ssh"].endswith(":ro")
    assert mounts["/app/var"].startswith("bot-data:")
    assert bot["read_only"] is True
    assert bot["cap_drop"] == ["ALL"]
    # Every variable the file needs is one env.example lists.
    example = (DEPLOY / "env.example").read_text()
    listed = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", example, re.MULTILINE))
    needed = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)[:?}]", (DEPLOY / "compose.yaml").read_text()))
    assert needed - {"BOT_IMAGE", "BASE_IMAGE"} <= listed
    stable = {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "DATABASE_URL"}
    assert stable | {"POSTGRES_PASSWORD"} <= listed
    assert "${POSTGRES_PASSWORD}@postgres:5432/" in example


# -- the systemd unit -----------------------------------------------------------------------------


def unit_settings(path: Path) -> dict[str, dict[str, list[str]]]:
    """[Section] -> key -> values, as systemd reads a unit (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_the_systemd_unit_migrates_then_serves_hardened():
    service = unit_settings(DEPLOY / "upgrade-bot.service")["Service"]
    assert service["User"] == ["upgrade-bot"]
    assert service["EnvironmentFile"] == ["/etc/upgrade-bot/env"]
    assert service["ExecStartPre"][0].endswith("python -m bot db upgrade")
    assert " -m bot serve " in service["ExecStart"][0]
    assert service["Restart"] == ["on-failure"]
    for hardening, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert service[hardening] == [value], hardening
    assert service["ReadWritePaths"] == ["/var/lib/upgrade-bot"]
    assert "/var/lib/upgrade-bot/" in " ".join(service["Environment"])


def test_systemd_analyze_verifies_the_unit(tmp_path: Path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (the unit is still read by the test above)")
    # verify checks that ExecStart's program exists: point it at this checkout's Python
    unit = tmp_path / "upgrade-bot.service"
    unit.write_text(
        (DEPLOY / "upgrade-bot.service")
        .read_text()
        .replace("/opt/upgrade-bot/.venv/bin/python", sys.executable)
    )
    verified = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert verified.returncode == 0, verified.stderr
    assert "upgrade-bot.service" not in verified.stderr, verified.stderr
