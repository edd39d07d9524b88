"""A run's approval as the surfaces show it: the tally, who may still approve, until when; and
what one vote changed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.domain.approval import Tally
from bot.domain.errors import UserError
from bot.domain.plan import PlannedStep
from bot.domain.run import Run


def gate_digest(plan_digest: str, step_id: str) -> str:
    """What votes at a gate are bound to: this plan, at this step."""
    return f"{plan_digest}.{step_id}"


class NotAllowed(UserError):
    """The user may not do that to that run."""


@dataclass(frozen=True, kw_only=True)
class Approval:
    """A run's approval state: the tally for its plan (or for the gate it waits at), who may
    still approve, and until when."""

    run: Run
    tally: Tally
    approvers: frozenset[str]
    expires_at: datetime
    digest: str  # what the votes are bound to: the plan, or the plan and the gate
    gate: PlannedStep | None = None

    @property
    def waiting_for(self) -> tuple[str, ...]:
        """Approvers who have not voted (the requester excluded when self-approval is off)."""
        voted = set(self.tally.approved_by) | set(self.tally.rejected_by)
        return tuple(sorted(self.approvers - voted))


@dataclass(frozen=True, kw_only=True)
class VoteOutcome:
    approval: Approval
    counted: bool  # False: a duplicate (Slack retry, second click), nothing changed
    now_approved: bool  # this vote completed the approval: the caller starts the run
    now_rejected: bool
