"""A product's runbook: its strategies, each an ordered list of steps, as frozen records.

Runbooks are data (`runbooks/*.yaml`); `bot.runbooks` validates a file and builds these records.
Every template here uses `{name}` placeholders rendered by `bot.domain.templates`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from bot.domain.errors import UnknownProduct, UnknownStrategy


@dataclass(frozen=True, kw_only=True)
class Follow:
    """Read a command that never ends by itself (a followed log) for a bounded while."""

    until: str | None = None  # regex: stop once a line matches (the start-up has finished)
    max_lines: int = 500
    max_seconds: float = 120.0


@dataclass(frozen=True, kw_only=True)
class ShellAction:
    """Run a command on the instance's host (over SSH, or locally for a local instance)."""

    kind: Literal["shell"] = "shell"
    command: str
    follow: Follow | None = None


class DockerOperation(StrEnum):
    INSPECT = "inspect"  # arguments: container
    IMAGES = "images"  # arguments: repository
    PULL = "pull"  # arguments: image (repository:tag)
    TAG = "tag"  # arguments: source, target


DOCKER_ARGUMENTS: Mapping[DockerOperation, tuple[str, ...]] = {
    DockerOperation.INSPECT: ("container",),
    DockerOperation.IMAGES: ("repository",),
    DockerOperation.PULL: ("image",),
    DockerOperation.TAG: ("source", "target"),
}


@dataclass(frozen=True, kw_only=True)
class DockerAction:
    """Call the instance's Docker Engine API."""

    kind: Literal["docker"] = "docker"
    operation: DockerOperation
    arguments: Mapping[str, str]


@dataclass(frozen=True, kw_only=True)
class HttpAction:
    """Read a page, such as the product's console, and treat its body as the step's output."""

    kind: Literal["http"] = "http"
    url: str
    expect_status: int = 200


Action = ShellAction | DockerAction | HttpAction


@dataclass(frozen=True, kw_only=True)
class Capture:
    """Take a value out of the step's output: the named group `name` of the first matching line."""

    name: str
    pattern: str


@dataclass(frozen=True, kw_only=True)
class NoLinesMatching:
    """Pass when no output line matches `pattern` (e.g. no ERROR in the start-up log)."""

    kind: Literal["no_lines_matching"] = "no_lines_matching"
    pattern: str
    description: str


@dataclass(frozen=True, kw_only=True)
class CaptureEquals:
    """Pass when the captured value equals the rendered `expected` (e.g. console shows target)."""

    kind: Literal["capture_equals"] = "capture_equals"
    capture: str
    expected: str
    description: str


Verification = NoLinesMatching | CaptureEquals


class StepRole(StrEnum):
    STARTUP_LOG = "startup_log"  # this step's output is the start-up log excerpt to report


@dataclass(frozen=True, kw_only=True)
class Step:
    """One thing to do, how long it may take, what to read from it and what must hold after it."""

    id: str
    title: str
    action: Action
    timeout: float
    captures: tuple[Capture, ...] = ()
    verifications: tuple[Verification, ...] = ()
    destructive: bool = False
    role: StepRole | None = None


@dataclass(frozen=True, kw_only=True)
class Strategy:
    """One way to upgrade: its steps, and the steps that undo them."""

    name: str
    description: str
    expected_outage: str
    steps: tuple[Step, ...]
    rollback: tuple[Step, ...] = ()
    auto_rollback: bool = False


@dataclass(frozen=True, kw_only=True)
class VersionSource:
    """Where the versions that exist come from: the instance's image registry, or a fixed list."""

    kind: Literal["registry", "list"]
    versions: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Runbook:
    """Everything the bot knows about upgrading one product."""

    product: str
    title: str
    aliases: tuple[str, ...]
    source: str  # the file it was loaded from
    digest: str  # sha256 of that file: a changed runbook means a changed plan
    detect: Step  # captures `current_version` without changing anything
    versions: VersionSource
    defaults: Mapping[str, str] = field(default_factory=dict)
    backup_capture: str = "backup_path"
    backup_location: str = ""  # template, shown in the plan
    strategies: Mapping[str, Strategy]
    default_strategy: str

    def strategy(self, name: str | None) -> Strategy:
        chosen = name or self.default_strategy
        if chosen not in self.strategies:
            known = ", ".join(sorted(self.strategies))
            raise UnknownStrategy(
                f"{self.title} has no strategy `{chosen}`.", f"Use one of: {known}."
            )
        return self.strategies[chosen]

    def names(self) -> tuple[str, ...]:
        return (self.product, *self.aliases)


# Values every plan provides, besides the instance's own and the runbook's defaults.
PLAN_VARIABLES = ("version", "current_version")


@dataclass(frozen=True, kw_only=True)
class Catalog:
    """The runbooks the bot knows, found by product name or alias."""

    runbooks: tuple[Runbook, ...]

    def find(self, name: str) -> Runbook:
        wanted = name.strip().lower()
        for runbook in self.runbooks:
            if wanted in (n.lower() for n in runbook.names()):
                return runbook
        known = (
            ", ".join(
                f"{r.product} ({', '.join(r.aliases)})" if r.aliases else r.product
                for r in self.runbooks
            )
            or "none"
        )
        raise UnknownProduct(f"There is no product `{name}`.", f"Use one of: {known}.")


def step_templates(step: Step) -> list[str]:
    """Every template text of a step, for checking and rendering."""
    action = step.action
    if isinstance(action, ShellAction):
        texts = [action.command]
    elif isinstance(action, DockerAction):
        texts = list(action.arguments.values())
    else:
        texts = [action.url]
    texts.extend(v.expected for v in step.verifications if isinstance(v, CaptureEquals))
    return texts
