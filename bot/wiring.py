"""The composition root: the only place that builds real adapters and hands them down."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from adapters.clock import SystemClock
from adapters.docker_engine import DockerConnector
from adapters.http_check import RequestsHttpCheck
from adapters.local import LocalShell
from adapters.registry import RegistryHttp
from adapters.sql_store import SqlRunStore, upgrade_schema
from adapters.ssh import ParamikoConnector
from bot.config import Config, Settings, load_config
from bot.domain.errors import UserError
from bot.engine.planning import Planner
from bot.engine.runner import Runner, RunObserver
from bot.engine.session import Ports


def build_ports() -> Ports:
    return Ports(
        ssh=ParamikoConnector(),
        docker=DockerConnector(),
        registry=RegistryHttp(),
        http=RequestsHttpCheck(),
        clock=SystemClock(),
        local_shell=LocalShell,
    )


def config_path(settings: Settings, given: Path | None) -> Path:
    path = given or settings.bot_config
    if path is None:
        raise UserError(
            "The bot has no config file.",
            "Set BOT_CONFIG to its path or pass --config PATH "
            "(deploy/example-config.yaml shows the form).",
        )
    return path


@dataclass(frozen=True)
class App:
    """What the CLI and the surfaces work with."""

    settings: Settings
    config: Config
    ports: Ports

    def planner(self) -> Planner:
        return Planner(self.config.catalog, self.config.inventory, self.ports)

    @cached_property
    def store(self) -> SqlRunStore:
        """One store (one connection pool) for the life of the process."""
        return SqlRunStore(self.settings.database_url)

    def runner(self, observer: RunObserver | None = None) -> Runner:
        return Runner(self.store, self.config.inventory, self.ports, observer)


def build_app(settings: Settings, config_file: Path | None = None) -> App:
    config = load_config(config_path(settings, config_file))
    return App(settings=settings, config=config, ports=build_ports())


def migrate(settings: Settings) -> str:
    """Bring the bot's database to the newest schema; returns the revision reached."""
    return upgrade_schema(settings.database_url)
