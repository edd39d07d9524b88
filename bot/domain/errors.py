"""One error tree with two audiences.

`UserError`s are mistakes of the person asking: they read as one sentence saying what is wrong and
how to fix it. `OperationalError`s are failures of the things the bot drives (hosts, Docker,
registries, the database): they carry the host, the step and the output tail an operator needs.
Anything else is a bug and reaches the one error handler of the surface that caught it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.domain.output import CommandResult


class BotError(Exception):
    """Base of every error the bot raises on purpose."""


class UserError(BotError):
    """The request cannot be done as asked; `fix` says what to ask instead."""

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} {fix}".strip())


class UnknownProduct(UserError):
    """No runbook answers to the product name or alias."""


class InvalidVersion(UserError):
    """The text given as a version is not one."""


class VersionNotAvailable(UserError):
    """The version is well formed but the product's registry or version list lacks it."""


class DowngradeRefused(UserError):
    """The target is older than (or equal to) the running version and no downgrade was asked."""


class UnknownEnvironment(UserError):
    """The environment is not in the config."""


class UnknownStrategy(UserError):
    """The runbook has no strategy of that name."""


class UnknownInstance(UserError):
    """No instance matches, or more than one does and the request must say which."""


class UnknownRun(UserError):
    """No run has that id."""


class InvalidTransition(UserError):
    """The run's state does not allow what was asked (approving a finished run, ...)."""


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong in a config or runbook file, located as precisely as we can."""

    file: str
    where: str  # dotted key path, e.g. "environments.prod.instances[0].ssh.port"
    line: int | None
    problem: str
    fix: str

    def __str__(self) -> str:
        place = f"{self.file}:{self.line}" if self.line else self.file
        key = f" {self.where}:" if self.where else ""
        return f"{place}:{key} {self.problem} {self.fix}".rstrip()


class ConfigError(BotError):
    """A config or runbook file is not valid; each problem names file, line or key, and the fix."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class OperationalError(BotError):
    """Something the bot drives failed. Carries where, and the output if there was any."""

    def __init__(
        self, message: str, *, host: str = "", result: CommandResult | None = None
    ) -> None:
        self.host = host
        self.result = result
        super().__init__(message)


class HostUnreachable(OperationalError):
    """The SSH connection could not be made (refused, timed out, no route, name unknown)."""


class HostKeyRejected(OperationalError):
    """The host's key is unknown or does not match the known_hosts file: we refuse to talk to it."""


class AuthenticationFailed(OperationalError):
    """The host refused our key."""


class ConnectionLost(OperationalError):
    """The connection dropped while a command ran; the command's outcome on the host is unknown."""


class StepTimeout(OperationalError):
    """A command ran past its timeout and was stopped; `result` holds what it printed."""


class FileTransferFailed(OperationalError):
    """A file could not be read from or written to a host (missing, no permission, no space)."""


class ContainerEngineUnavailable(OperationalError):
    """The Docker Engine of an instance could not be reached or answered with an error."""


class ImageNotFound(OperationalError):
    """The image or tag does not exist (locally or in the registry)."""


class ContainerNotFound(OperationalError):
    """No container of that name exists on the instance's engine."""


class RegistryUnavailable(OperationalError):
    """The image registry could not be reached or refused us."""


class HttpCheckFailed(OperationalError):
    """The console (or another HTTP endpoint) could not be read."""


class RunTakenOver(OperationalError):
    """This process no longer holds the run: its claim ran out (it stopped renewing it, stalled
    or lost the database) and another process marked the run interrupted. It must not run
    another step of it."""


class StoreUnavailable(OperationalError):
    """The bot's own database could not be used."""


class StoreOutdated(StoreUnavailable):
    """The database schema is not at the revision this code needs."""


class SafetyRefusal(BotError):
    """The bot refused to do something unsafe. The message says what and why."""


class BackupMissing(SafetyRefusal):
    """A destructive step was about to run with no backup captured in this run."""


class InstanceBusy(SafetyRefusal):
    """Another run is active on the same instance."""
