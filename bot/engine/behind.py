"""Instances behind the newest version: what the periodic behind-latest digest reports."""

from __future__ import annotations

from dataclasses import dataclass, replace

from bot.domain.errors import BotError, UnknownProduct
from bot.domain.inventory import Instance, Inventory
from bot.domain.runbook import Catalog, Runbook
from bot.engine.planning import Planner


@dataclass(frozen=True, kw_only=True)
class Lag:
    """One instance's version against the newest available, or why it could not be read."""

    environment: str
    instance: str
    product: str
    title: str
    current: str = ""
    newest: str = ""
    behind: int = 0  # how many newer versions there are
    problem: str = ""

    @property
    def key(self) -> str:
        return f"{self.environment}/{self.instance}"


def behind_latest(catalog: Catalog, inventory: Inventory, planner: Planner) -> list[Lag]:
    """Each instance with newer versions available (most behind first), then each that could
    not be checked. Instances that another names as a peer are left out: they are upgraded
    through it. Reads only: detect steps and registry listings."""
    peers = {key for i in inventory.instances() for key in i.peers.values()}
    lags = []
    for instance in inventory.instances():
        if not instance.product or instance.key in peers:
            continue
        try:
            runbook = catalog.find(instance.product)
        except UnknownProduct:
            continue
        lag = _lag(planner, instance, runbook)
        if lag.behind or lag.problem:
            lags.append(lag)
    return sorted(lags, key=lambda lag: (bool(lag.problem), -lag.behind, lag.key))


def _lag(planner: Planner, instance: Instance, runbook: Runbook) -> Lag:
    lag = Lag(
        environment=instance.environment,
        instance=instance.name,
        product=runbook.product,
        title=runbook.title,
    )
    try:
        current = planner.detect(runbook, instance)
        available = planner.available_versions(runbook, instance)
    except BotError as exc:
        return replace(lag, problem=str(exc))
    newer = [v for v in available if v > current]
    if not newer:
        return replace(lag, current=current.text)
    return replace(lag, current=current.text, newest=max(newer).text, behind=len(newer))
