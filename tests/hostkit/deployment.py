"""A MyST Studio test host reachable the way production is: sshd, dockerd, registry, console.

`myst_deployment` gives an installed MyST host (3.9.0.3), its own sshd, and a config file for the
bot that points at both, so tests drive the bot exactly as an operator's config would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.config import Config, load_config
from tests.hostkit.myst import MystHost
from tests.hostkit.services import Services
from tests.hostkit.sshd import SshServer

START_VERSION = "3.9.0.3"


@dataclass
class Deployment:
    host: MystHost
    ssh: SshServer
    services: Services
    config_file: Path

    def config(self) -> Config:
        return load_config(self.config_file)

    def write_config(self, *, ssh_port: int | None = None, known_hosts: Path | None = None) -> None:
        """(Re)write the bot's config for this host; the overrides simulate operator mistakes."""
        self.config_file.write_text(
            "default_environment: prod\n"
            "environments:\n"
            "  prod:\n"
            "    policy: {approvers: [U0BOB0001, U0CAROL01], approvals_required: 1}\n"
            "    instances:\n"
            "      - name: myst-prod\n"
            "        product: myst\n"
            f"        home: {self.host.home}\n"
            "        ssh:\n"
            "          host: 127.0.0.1\n"
            f"          port: {ssh_port or self.ssh.port}\n"
            f"          user: {self.services.host_user}\n"
            f"          key: {self.ssh.client_key}\n"
            f"          known_hosts: {known_hosts or self.ssh.known_hosts}\n"
            "          connect_timeout: 5s\n"
            f"        docker: {{url: '{self.services.docker_host}'}}\n"
            f"        registry: {{url: '{self.services.registry_url}'}}\n"
            f"        image: {self.host.image_repository}\n"
            f"        console_url: {self.host.console_url}\n"
            "        vars:\n"
            f"          container: {self.host.container}\n"
            f"          local_image: {self.host.local_image}\n"
        )


@pytest.fixture
def myst_deployment(
    services: Services,
    myst_host_factory: Callable[..., MystHost],
    ssh_server: SshServer,
    tmp_path: Path,
) -> Iterator[Deployment]:
    host = myst_host_factory()
    host.install(START_VERSION)
    deployment = Deployment(
        host=host, ssh=ssh_server, services=services, config_file=tmp_path / "config.yaml"
    )
    deployment.write_config()
    return deployment
