"""The ports the engine is given, and the open connections to one instance during a run."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType

from bot.domain.errors import OperationalError
from bot.domain.inventory import Instance
from bot.domain.ports import (
    Clock,
    ContainerEngine,
    ContainerEngineConnector,
    HttpCheck,
    ImageRegistry,
    Shell,
    ShellConnector,
)


@dataclass(frozen=True, kw_only=True)
class Ports:
    """Everything outside the engine, built by `bot.wiring` (or from twins in tests)."""

    ssh: ShellConnector
    docker: ContainerEngineConnector
    registry: ImageRegistry
    http: HttpCheck
    clock: Clock
    local_shell: Callable[[], Shell] | None = None


class InstanceSession:
    """Connections to one instance, opened on first use and kept for the length of a run (the
    SSH connector may then keep the connection open for the next run: `ssh.keep_open`).

    A connection that dropped is forgotten, so the next step (a rollback, say) reconnects.
    """

    def __init__(self, instance: Instance, ports: Ports) -> None:
        self.instance = instance
        self.ports = ports
        self._shell: Shell | None = None
        self._engine: ContainerEngine | None = None

    def shell(self) -> Shell:
        if self._shell is None:
            if self.instance.local:
                if self.ports.local_shell is None:
                    raise OperationalError(
                        f"{self.instance.name} is a local instance but this bot runs no local "
                        "shell.",
                        host="localhost",
                    )
                self._shell = self.ports.local_shell()
            else:
                assert self.instance.ssh is not None  # the config guarantees ssh or local
                self._shell = self.ports.ssh.connect(self.instance.ssh)
        return self._shell

    def engine(self) -> ContainerEngine:
        if self._engine is None:
            if self.instance.docker is None:
                raise OperationalError(
                    f"{self.instance.name} has no Docker endpoint in the config.",
                    host=self.instance.address,
                )
            self._engine = self.ports.docker.connect(self.instance.docker)
        return self._engine

    def forget_shell(self) -> None:
        if self._shell is not None:
            self._shell.close()
            self._shell = None

    def close(self) -> None:
        self.forget_shell()
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def __enter__(self) -> InstanceSession:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Sessions:
    """The sessions of a run, one per role ("" is the instance itself), opened on first use."""

    def __init__(self, instances: Mapping[str, Instance], ports: Ports) -> None:
        self._sessions = {role: InstanceSession(i, ports) for role, i in instances.items()}

    @classmethod
    def of(cls, session: InstanceSession) -> Sessions:
        """Sessions where only the instance itself is known (detecting a version, say)."""
        sessions = cls({}, session.ports)
        sessions._sessions[""] = session
        return sessions

    def get(self, role: str) -> InstanceSession:
        return self._sessions[role]

    def close(self) -> None:
        for session in self._sessions.values():
            session.close()

    def __enter__(self) -> Sessions:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
