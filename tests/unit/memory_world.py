"""A MyST Studio instance made of the in-memory twins, for fast engine tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from adapters.memory.clock import FakeClock
from adapters.memory.docker import MemoryContainerEngine, MemoryDockerConnector, MemoryRegistry
from adapters.memory.http import MemoryHttpCheck
from adapters.memory.shell import MemoryShell, MemoryShellConnector
from adapters.memory.store import MemoryRunStore
from bot.console.session import NoDirectory
from bot.domain.inventory import (
    DockerEndpoint,
    Environment,
    Instance,
    Inventory,
    Policy,
    Registry,
    SshTarget,
)
from bot.engine.planning import Planner
from bot.engine.runner import Runner
from bot.engine.service import UpgradeService
from bot.engine.session import Ports
from bot.runbooks import BUNDLED, load_runbooks

IMAGE = "registry.test/myst-studio"
CONSOLE = "http://myst-prod.test/console/"
HOME = "/opt/myst-studio"
BACKUP = f"{HOME}/backup/myst-studio-1700000000.sql"
STARTUP_LOG = (
    "Starting MyST Studio 3.9.1\n"
    "Migrating database schema from 3.9.0.3 to 3.9.1\n"
    "MyST Studio 3.9.1 started\n"
)


NONPROD_CONSOLE = "http://myst-test.test/console/"
NONPROD_BACKUP = f"{HOME}/backup/myst-studio-1600000000.sql"


def _instance(name: str, environment: str, console: str, **extra: object) -> Instance:
    return Instance(
        name=name,
        environment=environment,
        product="myst-studio",
        home=HOME,
        ssh=SshTarget(host=name, user="myst", key_file=Path("/k"), known_hosts=Path("/kh")),
        docker=DockerEndpoint(url="unix:///memory/docker.sock"),
        registry=Registry(url="http://registry.test"),
        image=IMAGE,
        console_url=console,
        **extra,  # type: ignore[arg-type]
    )


def console_page(version: str) -> str:
    return f"<html><body>MyST Studio<footer>Version {version}</footer></body></html>"


@dataclass
class MemoryWorld:
    shell: MemoryShell
    shells: MemoryShellConnector
    engine: MemoryContainerEngine
    registry: MemoryRegistry
    http: MemoryHttpCheck
    clock: FakeClock = field(default_factory=FakeClock)
    store: MemoryRunStore = field(default_factory=MemoryRunStore)
    policy: Policy = field(default_factory=Policy)

    @property
    def instance(self) -> Instance:
        return self.inventory.find("myst-studio", "prod", None)

    with_nonprod: bool = False  # a non-production twin, myst-test, for the phased strategy

    @property
    def inventory(self) -> Inventory:
        peers = {"nonprod": "nonprod/myst-test"} if self.with_nonprod else {}
        instance = _instance("myst-prod", "prod", CONSOLE, peers=peers)
        environments = {"prod": Environment(name="prod", instances=(instance,), policy=self.policy)}
        if self.with_nonprod:
            twin = _instance(
                "myst-test", "nonprod", NONPROD_CONSOLE, variables={"container": "myst-test"}
            )
            environments["nonprod"] = Environment(name="nonprod", instances=(twin,))
        return Inventory(environments=environments, default_environment="prod")

    @property
    def ports(self) -> Ports:
        return Ports(
            ssh=self.shells,
            docker=MemoryDockerConnector({"unix:///memory/docker.sock": self.engine}),
            registry=self.registry,
            http=self.http,
            clock=self.clock,
        )

    def planner(self) -> Planner:
        return Planner(load_runbooks(BUNDLED), self.inventory, self.ports)

    def runner(self, observer=None) -> Runner:  # type: ignore[no-untyped-def]
        return Runner(self.store, self.inventory, self.ports, observer)

    def service(self) -> UpgradeService:
        """The upgrade service on this world, as the chat surfaces use it."""
        return UpgradeService(
            catalog=load_runbooks(BUNDLED),
            inventory=self.inventory,
            ports=self.ports,
            store=self.store,
            directory=NoDirectory(),
        )


IN_PLACE = ["pull", "backup", "check-backup", "stop", "start", "startup-log", "console"]


def script_myst(shell: MemoryShell) -> MemoryShell:
    """Every MyST Studio script works on this twin host."""
    shell.on(r"/bin/pull\.sh", stdout="Pulled 3.9.1\n")
    shell.on(r"/bin/backup-database\.sh", stdout=f"Dumping\nBacked up to {BACKUP}\n")
    shell.on(r"^test -s ", stdout=f"-rw-r--r-- 1 myst myst 2048 {BACKUP}\n")
    shell.on(r"/bin/stop\.sh", stdout="Stopped\n")
    shell.on(r"/bin/start\.sh", stdout="Started\n")
    shell.on(r"/bin/output-logs\.sh", stdout=STARTUP_LOG, exit_code=None, seconds=10_000)
    shell.on(r"/bin/update-database\.sh", stdout="Restored\n")
    return shell


def myst_world(policy: Policy | None = None) -> MemoryWorld:
    """myst-prod runs 3.9.0.3; 3.9.0.3, 3.9.1 and 3.10.0 are in the registry; every script works."""
    registry = MemoryRegistry()
    for version in ("3.9.0.3", "3.9.1", "3.10.0"):
        registry.push(f"{IMAGE}:{version}")
    engine = MemoryContainerEngine(registry, url="unix:///memory/docker.sock")
    engine.pull(f"{IMAGE}:3.9.0.3")
    engine.tag(f"{IMAGE}:3.9.0.3", "myst-studio")
    engine.run_container("myst-studio", "myst-studio")
    shells = MemoryShellConnector()
    shell = script_myst(shells.shell("myst-prod"))
    http = MemoryHttpCheck()
    http.set_page(CONSOLE, console_page("3.9.1"))
    return MemoryWorld(
        shell=shell,
        shells=shells,
        engine=engine,
        registry=registry,
        http=http,
        policy=policy or Policy(),
    )


def phased_world(policy: Policy | None = None) -> MemoryWorld:
    """myst_world plus its non-production twin myst-test, also at 3.9.0.3, scripts working."""
    world = myst_world(policy)
    world.with_nonprod = True
    world.engine.run_container("myst-test", "myst-studio")
    twin = world.shells.shell("myst-test")
    twin.on(r"/bin/pull\.sh", stdout="Pulled 3.9.1\n")
    twin.on(r"/bin/backup-database\.sh", stdout=f"Backed up to {NONPROD_BACKUP}\n")
    twin.on(r"/bin/(restart|update-database)\.sh", stdout="Restarted\n")
    twin.on(r"/bin/output-logs\.sh", stdout=STARTUP_LOG, exit_code=None, seconds=10_000)
    world.http.set_page(NONPROD_CONSOLE, console_page("3.9.1"))
    return world


@dataclass
class FleetWorld(MemoryWorld):
    """Several MyST instances in prod (myst-1 ... myst-N), the same scripts on each."""

    names: tuple[str, ...] = ()
    batch_size: int = 1

    @property
    def inventory(self) -> Inventory:
        instances = tuple(
            _instance(name, "prod", f"http://{name}.test/console/", variables={"container": name})
            for name in self.names
        )
        environment = Environment(
            name="prod", instances=instances, policy=self.policy, batch_size=self.batch_size
        )
        return Inventory(environments={"prod": environment})


def fleet_world(count: int = 5, batch_size: int = 2) -> FleetWorld:
    base = myst_world()
    world = FleetWorld(
        shell=base.shell,
        shells=base.shells,
        engine=base.engine,
        registry=base.registry,
        http=base.http,
        names=tuple(f"myst-{n}" for n in range(1, count + 1)),
        batch_size=batch_size,
    )
    for name in world.names:
        world.engine.run_container(name, "myst-studio")
        script_myst(world.shells.shell(name))
        world.http.set_page(f"http://{name}.test/console/", console_page("3.9.1"))
    return world
