"""MyST Studio test hosts reachable the way production is: sshd, dockerd, registry, console.

`Deployment` writes the bot's config for a set of hosts — the instance itself, and peers that play
roles for other strategies (a non-production twin, a green instance, a proxy host) — so tests
drive the bot exactly as an operator's config would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.memory.store import MemoryRunStore
from bot.config import Config, load_config
from bot.console.session import NoDirectory
from bot.engine.service import UpgradeService
from bot.wiring import build_ports
from tests.hostkit.myst import MystHost
from tests.hostkit.services import Services
from tests.hostkit.sshd import SshServer

START_VERSION = "3.9.0.3"
POLICY = {"approvers": ["U0BOB0001", "U0CAROL01"], "approvals_required": 1}


def engine_service(config: Config) -> UpgradeService:
    """The engine as the bot wires it, over real hosts, with a fresh in-memory run store."""
    return UpgradeService(
        catalog=config.catalog,
        inventory=config.inventory,
        ports=build_ports(),
        store=MemoryRunStore(),
        directory=NoDirectory(),
    )


@dataclass
class Deployment:
    host: MystHost  # prod/myst-prod, the instance upgrades are asked for
    ssh: SshServer
    services: Services
    config_file: Path
    peers: dict[str, tuple[str, MystHost | dict[str, Any]]] = field(default_factory=dict)
    main_vars: dict[str, str] = field(default_factory=dict)
    fleet: dict[str, MystHost] = field(default_factory=dict)  # more prod instances, by name
    batch_size: int = 1

    def config(self) -> Config:
        return load_config(self.config_file)

    def add_peer(self, role: str, key: str, host: MystHost | dict[str, Any]) -> None:
        """A peer instance `environment/name` playing `role`: a MyST host, or a plain host given
        as config fields (a proxy: home and console_url)."""
        self.peers[role] = (key, host)
        self.write_config()

    def write_config(self, *, ssh_port: int | None = None, known_hosts: Path | None = None) -> None:
        """(Re)write the bot's config; the overrides simulate operator mistakes."""
        ssh = {
            "host": "127.0.0.1",
            "port": ssh_port or self.ssh.port,
            "user": self.services.host_user,
            "key": str(self.ssh.client_key),
            "known_hosts": str(known_hosts or self.ssh.known_hosts),
            "connect_timeout": "5s",
        }
        main = {
            "name": "myst-prod",
            **self._myst(self.host, ssh),
            "vars": {**self._myst(self.host, ssh)["vars"], **self.main_vars},
        }
        if self.peers:
            main["peers"] = {role: key for role, (key, _) in self.peers.items()}
        others = [{"name": name, **self._myst(host, ssh)} for name, host in self.fleet.items()]
        prod = {
            "policy": POLICY,
            "fleet": {"batch_size": self.batch_size},
            "instances": [main, *others],
        }
        environments: dict[str, Any] = {"prod": prod}
        for key, host in self.peers.values():
            env, _, name = key.partition("/")
            fields = self._myst(host, ssh) if isinstance(host, MystHost) else {"ssh": ssh, **host}
            environments.setdefault(env, {"policy": POLICY, "instances": []})
            environments[env]["instances"].append({"name": name, **fields})
        document = {"default_environment": "prod", "environments": environments}
        self.config_file.write_text(yaml.safe_dump(document, sort_keys=False))

    def _myst(self, host: MystHost, ssh: dict[str, Any]) -> dict[str, Any]:
        return {
            "product": "myst",
            "home": str(host.home),
            "ssh": ssh,
            "docker": {"url": self.services.docker_host},
            "registry": {"url": self.services.registry_url},
            "image": host.image_repository,
            "console_url": host.console_url,
            "vars": {"container": host.container, "local_image": host.local_image},
        }


@pytest.fixture
def myst_deployment(
    services: Services,
    myst_host_factory: Callable[..., MystHost],
    ssh_server: SshServer,
    tmp_path: Path,
) -> Deployment:
    host = myst_host_factory()
    host.install(START_VERSION)
    deployment = Deployment(
        host=host, ssh=ssh_server, services=services, config_file=tmp_path / "config.yaml"
    )
    deployment.write_config()
    return deployment
