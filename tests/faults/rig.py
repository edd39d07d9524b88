"""The real test hosts of one scenario, built once per module and reset between cases.

Every MyST Studio host reaches Docker and the registry through `Forwarder`s the rig controls: the
bot's Docker endpoint, the scripts' `DOCKER_HOST` (in `<home>/etc/myst.env`), the registry URL and
the image repository all name the relays, so cutting one is what the instance sees. The rig itself
inspects the hosts through the real Docker socket, so what it reads does not depend on a relay.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import shutil
from pathlib import Path

import docker
import yaml

from bot.engine.service import UpgradeService
from tests.faults.matrix import OLD, RUNBOOK, Scenario
from tests.faults.states import HostState, ProxyState, host_state, proxy_state
from tests.hostkit.deployment import Deployment, engine_service
from tests.hostkit.faults import Forwarder, ScriptSwitches, quiesce, settle
from tests.hostkit.myst import MystHost
from tests.hostkit.proxy import ProxyHost
from tests.hostkit.services import ROOT, Services, free_port
from tests.hostkit.sshd import SshServer

RIGS_DIR = ROOT / "var" / "faults"
PEERS = {
    "phased": {"nonprod": "nonprod/myst-test"},
    "zero-downtime": {"green": "prod/myst-green"},
}
PROD_ONLY_ROW = "customer=only-in-production\n"  # tells production's data from the twin's


class ResetFailed(RuntimeError):
    """A host could not be brought back to the baseline between cases."""


class Rig:
    """One scenario's hosts: `hosts` by role ("" is the instance), a proxy for zero-downtime."""

    def __init__(self, scenario: Scenario, services: Services, repository: str) -> None:
        self.scenario = scenario
        self.folder = RIGS_DIR / f"{scenario.strategy}-{secrets.token_hex(4)}"
        self.folder.mkdir(parents=True, mode=0o755)
        real_socket = Path(services.docker_host.removeprefix("unix://"))
        host, _, port = services.registry.partition(":")
        self.docker_relay = Forwarder(self.folder / "docker.sock", real_socket).start()
        self.registry_relay = Forwarder(("127.0.0.1", free_port()), (host, int(port))).start()
        self.routed = dataclasses.replace(
            services,
            docker_host=self.docker_relay.address,
            registry=self.registry_relay.address,
        )
        self.repository = f"{self.registry_relay.address}/myst-studio"
        self.source_repository = repository
        self.services = services
        self.docker = docker.DockerClient(base_url=services.docker_host, version="auto")
        self.ssh = SshServer().start()
        self.hosts: dict[str, MystHost] = {}
        self.switches: dict[str, ScriptSwitches] = {}
        self.proxy: ProxyHost | None = None
        self.baselines: dict[str, Path] = {}
        self.deployment = Deployment(
            host=self._host(""),
            ssh=self.ssh,
            services=self.routed,
            config_file=self.folder / "config.yaml",
        )
        for role, key in PEERS.get(scenario.strategy, {}).items():
            self.deployment.peers[role] = (key, self._host(role))
        if scenario.strategy == "zero-downtime":
            self.proxy = ProxyHost(
                services, self.hosts[""].console_port, self.hosts["green"].console_port
            ).start()
            self.switches["proxy"] = ScriptSwitches.of_proxy(self.proxy.home).install()
            fields = {"home": str(self.proxy.home), "console_url": self.proxy.url}
            self.deployment.peers["proxy"] = ("prod/proxy", fields)
        if scenario.strategy == "offline":
            self.deployment.main_vars["archive_dir"] = str(self._archive())
        # The runbook as it is now, for every case of the module: a teammate's edit of it (or
        # of another product's runbook) mid-run does not change the cases under way.
        self.runbooks = self.folder / "runbooks"
        self.runbooks.mkdir()
        shutil.copy(RUNBOOK, self.runbooks)
        self.configure()

    def _host(self, role: str) -> MystHost:
        host = MystHost(self.services, self.repository)
        env = host.home / "etc" / "myst.env"  # the scripts reach Docker through the relay
        relay = f"DOCKER_HOST={self.docker_relay.address}"
        lines = env.read_text().splitlines()
        env.write_text(
            "\n".join(relay if x.startswith("DOCKER_HOST=") else x for x in lines) + "\n"
        )
        self.switches[role] = ScriptSwitches.of_myst(host.home).install()
        self.hosts[role] = host
        host.install(OLD)
        if role == "":
            host.write_database(host.database() + PROD_ONLY_ROW)
        baseline = host.home / "baseline.sql"
        baseline.write_text(host.database())
        shutil.chown(baseline, host.user.pw_uid, host.user.pw_gid)
        self.baselines[role] = baseline
        return host

    def _archive(self) -> Path:
        """`docker save` of 3.9.1, where the offline strategy looks for archives."""
        folder = self.folder / "archives"
        folder.mkdir()
        image = self.docker.images.pull(self.source_repository, tag="3.9.1")
        with (folder / "myst-studio-3.9.1.tar").open("wb") as out:
            for chunk in image.save(named=True):
                out.write(chunk)
        return folder

    # -- per case -------------------------------------------------------------------------------

    def configure(self, *, short_step: str | None = None, seconds: float = 2.0) -> None:
        """Write the bot's config, pointing at the rig's copy of the runbook; with `short_step`,
        at a copy where that step's timeout (and follow limit) is `seconds`."""
        folder = self.runbooks
        if short_step is not None:
            folder = self.folder / f"runbooks-{short_step}"
            if not folder.exists():
                folder.mkdir()
                document = yaml.safe_load((self.runbooks / RUNBOOK.name).read_text())
                for step in document["strategies"][self.scenario.strategy]["steps"]:
                    if step["id"] == short_step:
                        step["timeout"] = f"{seconds:g}s"
                        if "follow" in step:
                            step["follow"]["max_time"] = f"{seconds:g}s"
                (folder / RUNBOOK.name).write_text(yaml.safe_dump(document, sort_keys=False))
        self.deployment.write_config()
        config = yaml.safe_load(self.deployment.config_file.read_text())
        config = {"runbooks": folder.name, **config}  # relative to the config file
        self.deployment.config_file.write_text(yaml.safe_dump(config, sort_keys=False))

    def service(self) -> UpgradeService:
        return engine_service(self.deployment.config())

    def heal(self) -> None:
        """Mend every fault: switches off, relays listening, containers running."""
        for switches in self.switches.values():
            switches.clear()
        self.docker_relay.restore()
        self.registry_relay.restore()
        for host in self.hosts.values():
            with contextlib.suppress(docker.errors.NotFound):
                container = self.docker.containers.get(host.container)
                if container.status == "paused":
                    container.unpause()

    def reset(self) -> None:
        """Back to the baseline: 3.9.0.3 running on the baseline data, traffic on blue. Hosts
        already there are left alone; the others go through the vendor's scripts."""
        self.heal()
        settle(self.uid, self.leftover_marks())
        for role, host in self.hosts.items():
            if not self.at_baseline(role):
                steps = [("pull.sh", OLD), ("update-database.sh", str(self.baselines[role]))]
                for step in steps:
                    done = host.run(*step)
                    if done.returncode != 0:
                        raise ResetFailed(f"{role or 'main'}: {step}: {done.stdout}{done.stderr}")
                host.wait_started()
            if not self.at_baseline(role):
                raise ResetFailed(
                    f"{role or 'main'} is not back at the baseline: {self.state(role)}"
                )
        if self.proxy is not None and proxy_state(self.proxy).active != "blue":
            done = self.proxy.switch("blue")
            if done.returncode != 0:
                raise ResetFailed(f"proxy: switch.sh blue: {done.stdout}{done.stderr}")

    @property
    def uid(self) -> int:
        return self.hosts[""].user.pw_uid

    def leftover_marks(self) -> tuple[str, ...]:
        """What the command lines of the scripts (and the docker commands they run) a dropped
        session left behind contain; never the services themselves (nginx's names `conf/`)."""
        homes = [*(h.home for h in self.hosts.values()), *([self.proxy.home] if self.proxy else [])]
        return (*(f"{home}/bin/" for home in homes), *(h.container for h in self.hosts.values()))

    def quiesce(self) -> list[int]:
        """Let the commands a dropped session left behind finish, as they would on a real host
        (the end state includes what they did); the pids still running after a few seconds."""
        return quiesce(self.uid, self.leftover_marks())

    def at_baseline(self, role: str) -> bool:
        """3.9.0.3 running, shown and tagged, on the baseline data; and the image it runs still
        tagged `<repository>:3.9.0.3`, which the bot reads the running version from (the Docker
        Engine is shared: other test runs may have untagged it meanwhile)."""
        state, baseline = self.state(role), self.baselines[role].read_text()
        try:
            tagged = self.docker.images.get(f"{self.repository}:{OLD}").id
        except docker.errors.ImageNotFound:
            tagged = None
        return (
            state.running == state.console == state.tag == OLD
            and state.database == baseline
            and state.image == tagged
        )

    def state(self, role: str) -> HostState:
        return host_state(self.hosts[role], self.docker)

    def states(self) -> dict[str, HostState | ProxyState]:
        found: dict[str, HostState | ProxyState] = {r: self.state(r) for r in self.hosts}
        if self.proxy is not None:
            found["proxy"] = proxy_state(self.proxy)
        return found

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy.remove()
        for host in self.hosts.values():
            host.cleanup()
        self.ssh.remove()
        self.docker_relay.close()
        self.registry_relay.close()
        self.docker.close()
        shutil.rmtree(self.folder, ignore_errors=True)
