"""Planning: a request (product, version, where) becomes a `Plan`, or a clear refusal.

Checks run cheapest first: the version's form and the names before anything is contacted, then the
registry (does that version exist?), then the instance (what runs now?). Nothing here changes any
instance: the detect step only reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.domain.errors import (
    DowngradeRefused,
    InvalidVersion,
    OperationalError,
    VersionNotAvailable,
)
from bot.domain.inventory import Instance, Inventory
from bot.domain.plan import Plan, PlannedStep
from bot.domain.runbook import Catalog, DockerAction, HttpAction, Runbook, ShellAction, Step
from bot.domain.templates import as_is, render_preview
from bot.domain.versions import Version, known_versions, parse_version
from bot.engine.session import InstanceSession, Ports
from bot.engine.steps import StepExecutor

SHOWN_VERSIONS = 6


class DetectionFailed(OperationalError):
    """The instance's current version could not be read."""


@dataclass(frozen=True, kw_only=True)
class UpgradeRequest:
    """What someone asked for, as typed (the version is still text)."""

    product: str
    version: str
    environment: str | None = None
    instance: str | None = None
    strategy: str | None = None
    allow_downgrade: bool = False


class Planner:
    """Builds plans from the runbooks, the inventory and what the instance reports."""

    def __init__(self, catalog: Catalog, inventory: Inventory, ports: Ports) -> None:
        self._catalog = catalog
        self._inventory = inventory
        self._ports = ports
        self._executor = StepExecutor(ports)

    def build(self, request: UpgradeRequest) -> Plan:
        runbook = self._catalog.find(request.product)
        target = parse_version(request.version)
        strategy = runbook.strategy(request.strategy)
        instance = self._inventory.find(runbook.product, request.environment, request.instance)
        self._check_available(runbook, instance, target)
        with InstanceSession(instance, self._ports) as session:
            current = self._detect(runbook, instance, session)
            if any(step.action.kind == "shell" for step in strategy.steps):
                session.shell()  # unreachable hosts and unknown host keys surface now, not later
        if target == current:
            raise DowngradeRefused(
                f"{instance.name} ({instance.environment}) already runs {runbook.title} {current}.",
                "There is nothing to upgrade.",
            )
        if target < current and not request.allow_downgrade:
            raise DowngradeRefused(
                f"{instance.name} ({instance.environment}) runs {runbook.title} {current}, "
                f"which is newer than {target}.",
                "To undo an upgrade ask for a rollback of its run; to downgrade anyway, ask again "
                "with --allow-downgrade.",
            )
        values = {
            **runbook.defaults,
            **instance.template_values(),
            "version": target.text,
            "current_version": current.text,
        }
        planned = _number(strategy.steps, values, start=1)
        return Plan(
            product=runbook.product,
            product_title=runbook.title,
            environment=instance.environment,
            instance=instance.name,
            address=instance.address,
            strategy=strategy.name,
            from_version=current.text,
            to_version=target.text,
            steps=planned,
            rollback=_number(strategy.rollback, values, start=1),
            auto_rollback=strategy.auto_rollback,
            variables=values,
            backup_capture=runbook.backup_capture,
            backup_location=render_preview(runbook.backup_location, values, quote=as_is),
            expected_outage=strategy.expected_outage,
            runbook_digest=runbook.digest,
            created_at=self._ports.clock.now(),
            downgrade=target < current,
        )

    def detect(self, runbook: Runbook, instance: Instance) -> Version:
        """Read the running version with the runbook's detect step."""
        with InstanceSession(instance, self._ports) as session:
            return self._detect(runbook, instance, session)

    def _detect(self, runbook: Runbook, instance: Instance, session: InstanceSession) -> Version:
        values = {**runbook.defaults, **instance.template_values()}
        outcome = self._executor.run(runbook.detect, values, session)
        text = outcome.captures.get("current_version")
        if outcome.ok and text is not None:
            try:
                return parse_version(text)
            except InvalidVersion:
                pass
        problem = outcome.error or f"`{text}` is not a version."
        raise DetectionFailed(
            f"Could not tell which {runbook.title} version {instance.name} runs: {problem}",
            host=instance.address,
            result=outcome.result,
        )

    def available_versions(self, runbook: Runbook, instance: Instance) -> list[Version]:
        if runbook.versions.kind == "list":
            return known_versions(runbook.versions.versions)
        assert instance.registry is not None  # the config requires it for registry runbooks
        return known_versions(self._ports.registry.tags(instance.registry, instance.repository))

    def _check_available(self, runbook: Runbook, instance: Instance, target: Version) -> None:
        available = self.available_versions(runbook, instance)
        if target in available:
            return
        where = (
            f"the registry ({instance.image})"
            if runbook.versions.kind == "registry"
            else f"the {runbook.product} runbook's version list"
        )
        newest = ", ".join(v.text for v in available[-SHOWN_VERSIONS:]) or "none"
        raise VersionNotAvailable(
            f"{runbook.title} {target} is not in {where}.",
            f"Versions there (newest last): {newest}.",
        )


def _number(steps: tuple[Step, ...], values: dict[str, str], start: int) -> tuple[PlannedStep, ...]:
    return tuple(
        PlannedStep(number=start + index, step=step, preview=preview(step, values))
        for index, step in enumerate(steps)
    )


def preview(step: Step, values: dict[str, str]) -> str:
    """What the step will do, with the values known now; later captures show as <name>."""
    action = step.action
    if isinstance(action, ShellAction):
        return render_preview(action.command, values)
    if isinstance(action, DockerAction):
        args = " ".join(render_preview(v, values, quote=as_is) for v in action.arguments.values())
        return f"docker {action.operation} {args}"
    assert isinstance(action, HttpAction)
    return f"GET {render_preview(action.url, values, quote=as_is)}"
