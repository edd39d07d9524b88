"""A plan: one runbook strategy resolved for one instance and one version pair.

Approval is bound to a plan's digest: a different instance, version, runbook or step list gives a
different digest, and so needs new approvals.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from bot.domain.runbook import Step


@dataclass(frozen=True, kw_only=True)
class PlannedStep:
    """A step with its number and what it will do, as far as it is known before running."""

    number: int
    step: Step
    preview: str  # e.g. "/opt/myst-studio/bin/pull.sh 3.9.1"; later captures show as <name>


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What the bot will do, reviewed and approved as a whole."""

    product: str
    product_title: str
    environment: str
    instance: str
    address: str
    strategy: str
    from_version: str
    to_version: str
    steps: tuple[PlannedStep, ...]
    rollback: tuple[PlannedStep, ...]
    auto_rollback: bool
    variables: Mapping[str, str]  # every value known at plan time (the captures come later)
    backup_capture: str
    backup_location: str
    expected_outage: str
    runbook_digest: str
    created_at: datetime
    downgrade: bool = False
    digest: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.digest:
            object.__setattr__(self, "digest", self._compute_digest())

    def _compute_digest(self) -> str:
        material = {
            "product": self.product,
            "environment": self.environment,
            "instance": self.instance,
            "strategy": self.strategy,
            "from": self.from_version,
            "to": self.to_version,
            "steps": [(p.step.id, p.preview, p.step.destructive) for p in self.steps],
            "rollback": [(p.step.id, p.preview) for p in self.rollback],
            "variables": dict(sorted(self.variables.items())),
            "runbook": self.runbook_digest,
        }
        encoded = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(encoded).hexdigest()[:16]

    @property
    def instance_key(self) -> str:
        return f"{self.environment}/{self.instance}"

    def step(self, step_id: str) -> PlannedStep:
        for planned in (*self.steps, *self.rollback):
            if planned.step.id == step_id:
                return planned
        raise KeyError(step_id)
