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
    target: str = ""  # the instance it runs on (environment/name), when not the plan's own


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
    rollback_scope: str = "all"  # undo "all" that changed, or only what changed "since_gate"
    roles: Mapping[str, str] = field(default_factory=dict)  # role -> instance key, e.g. green
    role_variables: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    options: Mapping[str, bool] = field(default_factory=dict)
    rollback_of: int | None = None  # this plan undoes that run
    part_of: int | None = None  # this plan is one member of that fleet run
    members: tuple[Plan, ...] = ()  # a fleet: one plan per instance, canary first
    batch_size: int = 1  # a fleet upgrades this many members at a time after the canary
    notes: tuple[str, ...] = ()  # what the approvers must know besides the steps
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
            "steps": [(p.step.id, p.preview, p.step.destructive, p.target) for p in self.steps],
            "rollback": [(p.step.id, p.preview, p.target) for p in self.rollback],
            "variables": dict(sorted(self.variables.items())),
            "roles": dict(sorted(self.roles.items())),
            "options": dict(sorted(self.options.items())),
            "rollback_of": self.rollback_of,
            "part_of": self.part_of,
            "members": [m.digest for m in self.members],
            "batch_size": self.batch_size,
            "notes": list(self.notes),
            "rollback_scope": self.rollback_scope,
            "runbook": self.runbook_digest,
        }
        encoded = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(encoded).hexdigest()[:16]

    @property
    def instance_key(self) -> str:
        return f"{self.environment}/{self.instance}"

    def values_for(self, role: str) -> dict[str, str]:
        """The values a step on `role` sees before captures: that role's instance values."""
        return {**self.variables, **self.role_variables.get(role, {})}

    def step(self, step_id: str) -> PlannedStep:
        for planned in (*self.steps, *self.rollback):
            if planned.step.id == step_id:
                return planned
        raise KeyError(step_id)
