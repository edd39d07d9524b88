"""Approval: who may approve a run, and whether the votes cast so far are enough.

Votes are bound to a plan digest: a vote for an earlier plan of the same run does not count. Each
approver counts once; one rejection by an approver rejects the run. Whether the requester may
approve their own run is the environment's policy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from bot.domain.errors import UserError
from bot.domain.inventory import Policy


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


@dataclass(frozen=True, kw_only=True)
class Vote:
    run_id: int
    user: str
    decision: Decision
    plan_digest: str
    at: datetime
    via: str  # "button", "reaction", "console"


class NotAnApprover(UserError):
    """The voter is not among the environment's approvers."""


class SelfApprovalRefused(UserError):
    """The requester tried to approve their own run where policy forbids it."""


@dataclass(frozen=True, kw_only=True)
class Tally:
    """The votes that count for one plan digest."""

    required: int
    approved_by: tuple[str, ...]
    rejected_by: tuple[str, ...]

    @property
    def rejected(self) -> bool:
        return bool(self.rejected_by)

    @property
    def approved(self) -> bool:
        return not self.rejected and len(self.approved_by) >= self.required

    @property
    def missing(self) -> int:
        return max(0, self.required - len(self.approved_by))


def check_voter(
    policy: Policy,
    approvers: frozenset[str],
    *,
    environment: str,
    requester: str,
    user: str,
    decision: Decision,
) -> None:
    """Raise a `UserError` telling `user` why their vote cannot count."""
    if user not in approvers:
        names = ", ".join(f"<@{a}>" for a in sorted(approvers)) or "nobody (see the config)"
        raise NotAnApprover(
            f"You are not an approver for {environment}, so your vote does not count.",
            f"Approvers there: {names}.",
        )
    if decision is Decision.APPROVE and user == requester and not policy.allow_self_approval:
        raise SelfApprovalRefused(
            f"You asked for this run, and {environment} does not allow approving your own run.",
            "Ask another approver.",
        )


def tally(
    policy: Policy,
    approvers: frozenset[str],
    *,
    requester: str,
    digest: str,
    votes: Iterable[Vote],
) -> Tally:
    approved: list[str] = []
    rejected: list[str] = []
    for vote in sorted(votes, key=lambda v: v.at):
        if vote.plan_digest != digest or vote.user not in approvers:
            continue
        if vote.decision is Decision.REJECT:
            rejected.append(vote.user)
        elif vote.user != requester or policy.allow_self_approval:
            approved.append(vote.user)
    return Tally(
        required=policy.approvals_required,
        approved_by=tuple(dict.fromkeys(approved)),
        rejected_by=tuple(dict.fromkeys(rejected)),
    )
