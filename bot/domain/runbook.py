"""A product's runbook: its strategies, each an ordered list of steps, as frozen records.

Runbooks are data (`runbooks/*.yaml`); `bot.runbooks` validates a file and builds these records.
Every template here uses `{name}` placeholders rendered by `bot.domain.templates`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal

from bot.domain.errors import UnknownProduct, UnknownStrategy
from bot.domain.templates import placeholders
from bot.domain.versions import Version, parse_version


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


@dataclass(frozen=True, kw_only=True)
class CopyAction:
    """Copy a file from another role's host to this step's host, streamed through the bot."""

    kind: Literal["copy"] = "copy"
    source_role: str  # "" is the instance itself
    source: str  # path on the source host
    dest: str  # folder on this step's host


@dataclass(frozen=True, kw_only=True)
class UploadAction:
    """Send a file from the bot's machine (an image archive, say) to this step's host."""

    kind: Literal["upload"] = "upload"
    source: str  # path on the bot's machine
    dest: str  # folder on the host


@dataclass(frozen=True, kw_only=True)
class GateAction:
    """Pause the run until an approver says go on (or stop) in the run's thread."""

    kind: Literal["gate"] = "gate"
    prompt: str


@dataclass(frozen=True, kw_only=True)
class MemberAction:
    """In a fleet plan: upgrade one member instance, as its own run (never in a runbook)."""

    kind: Literal["member"] = "member"
    index: int  # into the fleet plan's members


Action = (
    ShellAction | DockerAction | HttpAction | CopyAction | UploadAction | GateAction | MemberAction
)


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


@dataclass(frozen=True, kw_only=True)
class Condition:
    """When a step is part of the plan; decided at plan time from options and versions."""

    option: str | None = None  # the strategy option must be on ...
    unless_option: str | None = None  # ... or off
    target_below: str | None = None  # the target version is older than this
    target_at_least: str | None = None
    from_below: str | None = None  # the running version is older than this


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
    destructive: bool = False  # changes data: needs a backup of its host taken in this run
    rollback_needed: bool = False  # changes its host otherwise (a traffic switch, say)
    role: StepRole | None = None
    runs_on: str = ""  # a role of the strategy ("" is the instance itself)
    when: Condition | None = None
    hide_output: bool = False  # the output may hold secrets: keep none of it, show none of it
    irreversible: bool = False  # a rollback cannot undo it (a database migration, say)
    for_each_migration: bool = False  # one step per migration of every version passed
    # A rollback step that undoes these steps only: it runs if one of them started. Without it,
    # the step runs whenever its host rolls back.
    undoes: tuple[str, ...] = ()

    @property
    def changes_host(self) -> bool:
        """Once this step has started, its host needs the rollback if the run fails."""
        return self.destructive or self.rollback_needed


@dataclass(frozen=True, kw_only=True)
class StrategyOption:
    """A yes/no choice the requester can make, e.g. `prod_data=yes` to test on production data."""

    description: str
    default: bool = False


@dataclass(frozen=True, kw_only=True)
class Strategy:
    """One way to upgrade: its steps, and the steps that undo them."""

    name: str
    description: str
    expected_outage: str
    steps: tuple[Step, ...]
    rollback: tuple[Step, ...] = ()
    auto_rollback: bool = False
    roles: Mapping[str, str] = field(default_factory=dict)  # role -> what it is, e.g. green
    # On failure, undo every host that changed ("all"), or only the failed step's host
    # ("since_gate": only what changed after the last gate passed; in a phased upgrade,
    # non-production, approved at the gate, stays upgraded when production fails).
    rollback_scope: Literal["all", "since_gate"] = "all"
    options: Mapping[str, StrategyOption] = field(default_factory=dict)
    versions: VersionSource | None = None  # where versions come from, if not the runbook's


@dataclass(frozen=True, kw_only=True)
class VersionSource:
    """Where the versions that exist come from: the instance's image registry, a fixed list, or
    archives on the bot's machine (offline: `archive` is a path template with `{version}`)."""

    kind: Literal["registry", "list", "archive"]
    versions: tuple[str, ...] = ()
    archive: str = ""


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
    # version -> the commands that migrate to it, run for every version an upgrade passes
    migrations: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
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
# Values a `for_each: migration` step sees: the migration's command and the version it belongs to.
MIGRATION_VARIABLES = ("migration", "migration_version")


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


def backup_name(role: str, capture: str) -> str:
    """The capture a destructive step on `role` needs: `backup_path`, `nonprod_backup_path`."""
    return f"{role}_{capture}" if role else capture


def step_templates(step: Step) -> list[str]:
    """Every template text of a step, for checking and rendering."""
    action = step.action
    if isinstance(action, ShellAction):
        texts = [action.command]
    elif isinstance(action, DockerAction):
        texts = list(action.arguments.values())
    elif isinstance(action, HttpAction):
        texts = [action.url]
    elif isinstance(action, CopyAction | UploadAction):
        texts = [action.source, action.dest]
    elif isinstance(action, GateAction):
        texts = [action.prompt]
    else:
        texts = []
    texts.extend(v.expected for v in step.verifications if isinstance(v, CaptureEquals))
    return texts


def needed_values(runbook: Runbook, steps: Sequence[Step]) -> dict[str, set[str]]:
    """The names each role's instance must give a value for, for these steps to be planned:
    every placeholder that is neither a plan value, a runbook default nor a capture."""
    steps = [runbook.detect, *steps]
    captured = {c.name for s in steps for c in s.captures}
    plain = set(PLAN_VARIABLES) | set(MIGRATION_VARIABLES) | set(runbook.defaults) | captured
    needed: dict[str, set[str]] = {}
    for step in steps:
        names = {n for t in step_templates(step) for n in placeholders(t)} - plain
        needed.setdefault(step.runs_on, set()).update(names)
        if step.for_each_migration:
            commands = [c for cs in runbook.migrations.values() for c in cs]
            needed[step.runs_on].update({n for c in commands for n in placeholders(c)} - plain)
    needed.setdefault("", set()).update(set(placeholders(runbook.backup_location)) - plain)
    return needed


def expand_migrations(
    step: Step, runbook: Runbook, current: Version, target: Version
) -> list[Step]:
    """A `for_each: migration` step as one step per migration command of every version after
    `current` up to `target`, skipped versions included, in version order (3.10 after 3.9)."""
    by_version = {parse_version(text): commands for text, commands in runbook.migrations.items()}
    steps = []
    for version in sorted(v for v in by_version if current < v <= target):
        for index, command in enumerate(by_version[version], 1):
            action = step.action
            assert isinstance(action, ShellAction)  # the runbook check allows shell steps only
            text = action.command.replace("{migration}", command).replace(
                "{migration_version}", version.text
            )
            script = command.rsplit("/", 1)[-1].split()[0]
            steps.append(
                replace(
                    step,
                    id=f"{step.id}-{version.text}-{index}",
                    title=f"{step.title} {version.text}: {script}",
                    action=replace(action, command=text),
                    for_each_migration=False,
                )
            )
    return steps


def missing_values(
    needed: Mapping[str, set[str]], values_by_role: Mapping[str, Mapping[str, str]]
) -> list[str]:
    """Needed names without a value. A step may name another role's value with the role as a
    prefix (`green_console_url`); a step on a role sees that role's values by their plain names."""
    missing = []
    for role, names in sorted(needed.items()):
        own = values_by_role.get(role, {})
        for name in sorted(names):
            if own.get(name) or any(
                other and name.startswith(f"{other}_") and values.get(name[len(other) + 1 :])
                for other, values in values_by_role.items()
            ):
                continue
            missing.append(f"{name} (on its {role} peer)" if role else name)
    return missing
