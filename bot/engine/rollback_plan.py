"""Undoing a finished run on request: a plan built from the run's own rollback steps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from bot.domain.errors import UserError
from bot.domain.plan import Plan, PlannedStep
from bot.domain.run import Run, StepResult, StepStatus, changed_roles, needed_rollback
from bot.domain.runbook import step_templates
from bot.domain.templates import placeholders
from bot.engine.preview import preview


def rollback_plan(run: Run, results: Sequence[StepResult], now: datetime) -> Plan:
    """A plan that undoes `run` on request: its rollback steps for the hosts it changed, with the
    values it captured (the backup path, say) filled in. Approved like any plan."""
    plan = run.plan
    if not changed_roles(plan, results):
        raise UserError(
            f"Run #{run.id} changed nothing on its hosts, so there is nothing to roll back.",
            f"See `/upgrade status {run.id}`.",
        )
    chosen = [p.step for p in needed_rollback(plan, results)]
    if not chosen:
        raise UserError(
            f"The {plan.strategy} strategy has no rollback steps.",
            "Undo the change by hand, following the product's guide.",
        )
    captures = {k: v for r in results for k, v in r.captures.items()}
    values = {**plan.variables, **captures}
    needed = {n for step in chosen for t in step_templates(step) for n in placeholders(t)}
    known = set(values) | {n for vs in plan.role_variables.values() for n in vs}
    if missing := sorted(needed - known):
        raise UserError(
            f"Run #{run.id} never captured {', '.join(f'`{m}`' for m in missing)}, "
            "which its rollback needs.",
            "Undo the change by hand.",
        )
    steps = tuple(
        PlannedStep(
            number=n,
            step=step,
            preview=preview(step, {**values, **plan.role_variables.get(step.runs_on, {})}),
            target=plan.roles.get(step.runs_on, ""),
        )
        for n, step in enumerate(chosen, 1)
    )
    ran = {r.step_id for r in results if r.status in (StepStatus.SUCCEEDED, StepStatus.FAILED)}
    kept = [p.step.title for p in plan.steps if p.step.irreversible and p.step.id in ran]
    notes = (f"The rollback cannot undo what these steps did: {'; '.join(kept)}.",) if kept else ()
    return replace(
        plan,
        notes=notes,
        steps=steps,
        rollback=(),
        auto_rollback=False,
        variables=values,
        strategy=f"rollback of #{run.id}",
        from_version=plan.to_version,
        to_version=plan.from_version,
        downgrade=True,
        rollback_of=run.id,
        created_at=now,
        expected_outage="as the rollback steps take",
        digest="",
    )
