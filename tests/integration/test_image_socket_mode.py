"""The image in Socket Mode: its HEALTHCHECK probes /healthz on `--port` there too, /readyz reports
the Socket Mode link, and the log is JSON lines without secrets. (The image is built as
tests/integration/test_image.py builds it, with its fixtures.)"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import docker
import pytest
from docker.models.containers import Container

from tests.hostkit.services import free_port
from tests.hostkit.slackbot import wait_for
from tests.integration.test_image import (  # the fixtures, and the helpers that go with them
    FIRST_BUILD_SECONDS,
    _health,
    _healthz,
    engine,
    image,
    serve_sandbox,
    volume,
)
from tests.slackemu.server import SlackEmulator

__all__ = ["engine", "image", "volume"]  # fixtures, used by name

pytestmark = pytest.mark.timeout(FIRST_BUILD_SECONDS + 300)


@pytest.fixture
def socket_mode_container(
    engine: docker.DockerClient, image: str, volume: str, slack_api: SlackEmulator
) -> Iterator[tuple[Container, str]]:
    environment = {
        "SLACK_APP_TOKEN": slack_api.app_token,
        "SLACK_BOT_TOKEN": slack_api.token,
        "SLACK_SIGNING_SECRET": "socket-mode-needs-no-signatures-but-the-bot-wants-one",
        "SLACK_API_URL": slack_api.url,
    }
    # the = form of --port, which the health check must read as well
    with serve_sandbox(engine, image, volume, environment, port_option="--port=") as served:
        yield served


@pytest.mark.services
def test_the_health_check_probes_socket_mode_too(
    socket_mode_container: tuple[Container, str], slack_api: SlackEmulator
) -> None:
    container, base = socket_mode_container
    wait_for("/healthz", lambda: _healthz(container, base), timeout=60)
    slack_api.socket_mode.connected(timeout=30)
    wait_for("the image's health check", lambda: _health(container) == "healthy", timeout=60)
    with urllib.request.urlopen(f"{base}/readyz", timeout=5) as answer:  # noqa: S310 - loopback
        readiness = json.load(answer)
    assert readiness["checks"]["slack"] == {"ok": True, "detail": "Socket Mode connected"}

    container.stop(timeout=30)
    container.reload()
    logs = container.logs().decode(errors="replace")
    assert container.attrs["State"]["ExitCode"] == 0, logs
    assert slack_api.app_token not in logs
    assert slack_api.token not in logs
    lines = [json.loads(line) for line in logs.splitlines()]
    assert any("serving Slack in Socket Mode" in line["message"] for line in lines)


@pytest.mark.services
def test_the_health_check_fails_when_nothing_answers_on_the_port_in_socket_mode(
    engine: docker.DockerClient, image: str, slack_api: SlackEmulator
) -> None:
    # PID 1 has the command line of `serve --port N` in Socket Mode, but serves nothing.
    port = free_port()
    container = engine.containers.run(
        image,
        ["-c", "import time; time.sleep(600)", "serve", "--port", str(port)],
        entrypoint=["python"],
        detach=True,
        network_mode="host",
        environment={"SLACK_APP_TOKEN": slack_api.app_token},
        healthcheck={"interval": 1_000_000_000, "start_period": 0, "retries": 1},
    )
    try:
        wait_for("the image's health check", lambda: _health(container) == "unhealthy", timeout=60)
        container.reload()
        (probe, *_) = container.attrs["State"]["Health"]["Log"]
        assert probe["ExitCode"] == 1
        assert "Connection refused" in probe["Output"]
    finally:
        container.remove(v=True, force=True)
