"""Planning: a request (product, version, where) becomes a `Plan`, or a clear refusal.

Checks run cheapest first: the version's form, the names and options before anything is
contacted, then the registry or archive (does that version exist?), then the instance (what runs
now?) and every host the strategy touches (reachable, known host key). Nothing here changes any
instance: the detect step only reads.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from bot.domain.errors import (
    DowngradeRefused,
    InvalidVersion,
    OperationalError,
    UnknownInstance,
    UserError,
    VersionNotAvailable,
)
from bot.domain.inventory import Environment, Instance, Inventory
from bot.domain.plan import Plan, PlannedStep
from bot.domain.runbook import (
    Catalog,
    Condition,
    CopyAction,
    MemberAction,
    Runbook,
    Step,
    Strategy,
    VersionSource,
    expand_migrations,
    missing_values,
    needed_values,
)
from bot.domain.templates import as_is, render, render_preview
from bot.domain.versions import Version, known_versions, parse_version
from bot.engine.preview import preview
from bot.engine.session import InstanceSession, Ports, Sessions
from bot.engine.steps import StepExecutor

SHOWN_VERSIONS = 6
_YES, _NO = {"yes", "true", "on", "1"}, {"no", "false", "off", "0"}


class DetectionFailed(OperationalError):
    """The instance's current version could not be read."""


class UnknownOption(UserError):
    """The request names an option the strategy does not have, or gives it a bad value."""


@dataclass(frozen=True, kw_only=True)
class UpgradeRequest:
    """What someone asked for, as typed (the version is still text)."""

    product: str
    version: str
    environment: str | None = None
    instance: str | None = None
    strategy: str | None = None
    allow_downgrade: bool = False
    options: Mapping[str, str] = field(default_factory=dict)  # strategy options, as typed


class Planner:
    """Builds plans from the runbooks, the inventory and what the instances report."""

    def __init__(self, catalog: Catalog, inventory: Inventory, ports: Ports) -> None:
        self._catalog = catalog
        self._inventory = inventory
        self._ports = ports
        self._executor = StepExecutor(ports)

    def build(self, request: UpgradeRequest) -> Plan:
        runbook = self._catalog.find(request.product)
        target = parse_version(request.version)
        strategy = runbook.strategy(request.strategy)
        options = _options(strategy, request.options)
        env, instances = self._inventory.targets(
            runbook.product, request.environment, request.instance
        )
        if len(instances) > 1:
            return self._fleet(runbook, strategy, options, target, env, instances, request)
        return self._one(runbook, strategy, options, target, instances[0], request)

    def _fleet(
        self,
        runbook: Runbook,
        strategy: Strategy,
        options: dict[str, bool],
        target: Version,
        env: Environment,
        instances: list[Instance],
        request: UpgradeRequest,
    ) -> Plan:
        """One plan per instance, canary first; run as a fleet in batches."""
        if strategy.roles:
            names = ", ".join(i.name for i in instances)
            raise UnknownInstance(
                f"The {strategy.name} strategy upgrades one instance at a time, and "
                f"`{env.name}` has several ({names}).",
                "Say which with instance=<name>.",
            )
        members = tuple(
            self._one(runbook, strategy, options, target, i, request) for i in instances
        )
        steps = tuple(
            PlannedStep(
                number=n,
                step=Step(
                    id=member.instance,
                    title=f"Upgrade {member.instance}" + (" (the canary)" if n == 1 else ""),
                    action=MemberAction(index=n - 1),
                    timeout=0.0,
                ),
                preview=f"{member.strategy}: {member.from_version} -> {member.to_version} on "
                f"{member.address}",
                target=member.instance_key,
            )
            for n, member in enumerate(members, 1)
        )
        first = members[0]
        return replace(
            first,
            instance="*",
            address=f"{len(members)} instances",
            from_version=", ".join(sorted({m.from_version for m in members})),
            steps=steps,
            rollback=(),
            variables={},
            roles={},
            role_variables={},
            backup_location="on each instance, as its plan says",
            expected_outage=f"{strategy.expected_outage} on each instance; "
            f"{env.batch_size} at a time after the canary",
            members=members,
            batch_size=env.batch_size,
            digest="",
        )

    def _one(
        self,
        runbook: Runbook,
        strategy: Strategy,
        options: dict[str, bool],
        target: Version,
        instance: Instance,
        request: UpgradeRequest,
    ) -> Plan:
        peers = self._peers(strategy, instance)
        base = {**runbook.defaults, **instance.template_values(), "version": target.text}
        for role, peer in peers.items():
            base.update({f"{role}_{k}": v for k, v in peer.template_values().items()})
        target = self._check_available(runbook, strategy, instance, target, base)
        base["version"] = target.text  # as the source spells it: 3.8 asked, 3.8.0 listed
        current, peer_versions = self._detect_and_reach(runbook, strategy, instance, peers)
        self._check_direction(runbook, instance, target, current, request.allow_downgrade)
        steps = _chosen(strategy.steps, options, target, current, runbook)
        rollback = _chosen(strategy.rollback, options, target, current, runbook)
        self._check_values(runbook, strategy, instance, peers, [*steps, *rollback])
        values = {**base, "current_version": current.text}
        role_values = {
            role: {
                **peer.template_values(),
                "current_version": peer_versions.get(role, current).text,
            }
            for role, peer in peers.items()
        }

        def plan_steps(chosen: list[Step]) -> tuple[PlannedStep, ...]:
            return tuple(
                PlannedStep(
                    number=n,
                    step=s,
                    preview=preview(s, {**values, **role_values.get(s.runs_on, {})}),
                    target=peers[s.runs_on].key if s.runs_on else "",
                )
                for n, s in enumerate(chosen, 1)
            )

        return Plan(
            product=runbook.product,
            product_title=runbook.title,
            environment=instance.environment,
            instance=instance.name,
            address=instance.address,
            strategy=strategy.name,
            from_version=current.text,
            to_version=target.text,
            steps=plan_steps(steps),
            rollback=plan_steps(rollback),
            auto_rollback=strategy.auto_rollback,
            rollback_scope=strategy.rollback_scope,
            variables=values,
            backup_capture=runbook.backup_capture,
            backup_location=render_preview(runbook.backup_location, values, quote=as_is),
            expected_outage=strategy.expected_outage,
            runbook_digest=runbook.digest,
            created_at=self._ports.clock.now(),
            downgrade=target < current,
            roles={role: peer.key for role, peer in peers.items()},
            role_variables=role_values,
            options=options,
        )

    def _check_values(
        self,
        runbook: Runbook,
        strategy: Strategy,
        instance: Instance,
        peers: Mapping[str, Instance],
        steps: list[Step],
    ) -> None:
        values_by_role = {
            "": instance.template_values(),
            **{role: peer.template_values() for role, peer in peers.items()},
        }
        missing = missing_values(needed_values(runbook, steps), values_by_role)
        if missing:
            raise UserError(
                f"{instance.key} cannot use the {strategy.name} strategy as asked: the config "
                f"gives no value for {', '.join(f'`{m}`' for m in missing)}.",
                "Add them to the instance (or under `vars:`) in the config.",
            )

    def detect(self, runbook: Runbook, instance: Instance) -> Version:
        """Read the running version with the runbook's detect step."""
        with InstanceSession(instance, self._ports) as session:
            return self._detect(runbook, instance, session)

    def available_versions(
        self,
        runbook: Runbook,
        instance: Instance,
        source: VersionSource | None = None,
        values: Mapping[str, str] | None = None,
    ) -> list[Version]:
        source = source or runbook.versions
        if source.kind == "list":
            return known_versions(source.versions)
        if source.kind == "archive":
            return _archived_versions(source.archive, values or instance.template_values())
        assert instance.registry is not None  # the config requires it for registry runbooks
        return known_versions(self._ports.registry.tags(instance.registry, instance.repository))

    # -- internals --------------------------------------------------------------------------

    def _peers(self, strategy: Strategy, instance: Instance) -> dict[str, Instance]:
        peers = {}
        for role, what in strategy.roles.items():
            key = instance.peers.get(role)
            if key is None:
                raise UnknownInstance(
                    f"The {strategy.name} strategy needs a `{role}` ({what}) for "
                    f"{instance.key}, and the config names none.",
                    f"Add `peers: {{{role}: <environment>/<instance>}}` to {instance.name}.",
                )
            peers[role] = self._inventory.by_key(key)
        return peers

    def _detect_and_reach(
        self,
        runbook: Runbook,
        strategy: Strategy,
        instance: Instance,
        peers: Mapping[str, Instance],
    ) -> tuple[Version, dict[str, Version]]:
        """The running version of the instance and of its peers of the same product; and every
        host the strategy's steps need, reached now, so an unreachable host or an unknown host
        key surfaces before approval, not after."""
        remote_kinds = ("shell", "copy", "upload")
        roles = {s.runs_on for s in strategy.steps if s.action.kind in remote_kinds}
        roles |= {s.action.source_role for s in strategy.steps if isinstance(s.action, CopyAction)}
        with InstanceSession(instance, self._ports) as session:
            current = self._detect(runbook, instance, session)
            if "" in roles:
                session.shell()
        versions = {}
        for role, peer in sorted(peers.items()):
            with InstanceSession(peer, self._ports) as session:
                if peer.product == runbook.product:
                    versions[role] = self._detect(runbook, peer, session)
                if role in roles:
                    session.shell()
        return current, versions

    def _detect(self, runbook: Runbook, instance: Instance, session: InstanceSession) -> Version:
        values = {**runbook.defaults, **instance.template_values()}
        outcome = self._executor.run(runbook.detect, values, Sessions.of(session))
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

    def _check_available(
        self,
        runbook: Runbook,
        strategy: Strategy,
        instance: Instance,
        target: Version,
        values: Mapping[str, str],
    ) -> Version:
        """The available version equal to `target`, spelled as its source spells it."""
        source = strategy.versions or runbook.versions
        available = self.available_versions(runbook, instance, source, values)
        if target in available:
            return available[available.index(target)]
        where = {
            "registry": f"the registry ({instance.image})",
            "list": f"the {runbook.product} runbook's version list",
            "archive": "the image archives at "
            + render_preview(source.archive, values, quote=as_is).replace(target.text, "<version>"),
        }[source.kind]
        newest = ", ".join(v.text for v in available[-SHOWN_VERSIONS:]) or "none"
        raise VersionNotAvailable(
            f"{runbook.title} {target} is not in {where}.",
            f"Versions there (newest last): {newest}.",
        )

    @staticmethod
    def _check_direction(
        runbook: Runbook,
        instance: Instance,
        target: Version,
        current: Version,
        allow_downgrade: bool,
    ) -> None:
        if target == current:
            raise DowngradeRefused(
                f"{instance.name} ({instance.environment}) already runs {runbook.title} {current}.",
                "There is nothing to upgrade.",
            )
        if target < current and not allow_downgrade:
            raise DowngradeRefused(
                f"{instance.name} ({instance.environment}) runs {runbook.title} {current}, "
                f"which is newer than {target}.",
                "To undo an upgrade ask for a rollback of its run; to downgrade anyway, ask again "
                "with --allow-downgrade.",
            )


def _options(strategy: Strategy, given: Mapping[str, str]) -> dict[str, bool]:
    chosen = {name: option.default for name, option in strategy.options.items()}
    for name, text in given.items():
        if name not in strategy.options:
            known = ", ".join(f"{n}=yes|no" for n in strategy.options) or "none"
            raise UnknownOption(
                f"`{name}=` is not an option of the {strategy.name} strategy.",
                f"Its options: {known}; and always env=, strategy=, instance=.",
            )
        if text.lower() not in _YES | _NO:
            raise UnknownOption(f"`{name}={text}` is neither yes nor no.", f"Write {name}=yes.")
        chosen[name] = text.lower() in _YES
    return chosen


def _chosen(
    steps: tuple[Step, ...],
    options: Mapping[str, bool],
    target: Version,
    current: Version,
    runbook: Runbook,
) -> list[Step]:
    """The steps that apply, with each `for_each: migration` step expanded."""
    chosen: list[Step] = []
    for step in steps:
        if not _applies(step.when, options, target, current):
            continue
        if step.for_each_migration:
            chosen += expand_migrations(step, runbook, current, target)
        else:
            chosen.append(step)
    return chosen


def _applies(
    when: Condition | None, options: Mapping[str, bool], target: Version, current: Version
) -> bool:
    if when is None:
        return True
    checks = [
        when.option is None or options.get(when.option, False),
        when.unless_option is None or not options.get(when.unless_option, False),
        when.target_below is None or target < parse_version(when.target_below),
        when.target_at_least is None or target >= parse_version(when.target_at_least),
        when.from_below is None or current < parse_version(when.from_below),
    ]
    return all(checks)


def _archived_versions(pattern: str, values: Mapping[str, str]) -> list[Version]:
    """Versions whose archive exists on the bot's machine, by the archive path pattern."""
    template = render(pattern, {**values, "version": "\0"}, quote=as_is)
    head, _, tail = template.partition("\0")
    found = glob.glob(glob.escape(head) + "*" + glob.escape(tail))
    shape = re.compile(re.escape(head) + "(.+)" + re.escape(tail) + "$")
    return known_versions(m.group(1) for f in found if (m := shape.match(f)) and Path(f).is_file())
