"""The upgrade service: what every chat surface asks of the engine, in one place.

Requests become plans and runs awaiting approval; votes are checked against the policy and
counted; a run approved by enough approvers is ready to execute; runs waiting too long expire.
Nothing here knows about Slack or terminals: the surfaces render what these methods return.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from bot.domain.approval import Decision, Tally, Vote, check_voter, tally
from bot.domain.conversation import EnvironmentLocked, EnvLock
from bot.domain.errors import InvalidTransition, OperationalError, UserError
from bot.domain.inventory import Inventory, Policy
from bot.domain.plan import Plan
from bot.domain.ports import Clock, Directory, EventLog, LockStore, RunStore, ThreadStore, VoteStore
from bot.domain.run import ACTIVE_STATES, Run, RunState
from bot.domain.runbook import Catalog
from bot.engine.planning import Planner, UpgradeRequest
from bot.engine.runner import Runner, RunObserver
from bot.engine.session import Ports

GROUP_CACHE_SECONDS = 300.0


class Store(RunStore, VoteStore, EventLog, LockStore, ThreadStore, Protocol):
    """The bot's database as the service uses it."""


class NotAllowed(UserError):
    """The user may not do that to that run."""


@dataclass(frozen=True, kw_only=True)
class Approval:
    """A run's approval state: the tally for its plan, who may still approve, and until when."""

    run: Run
    tally: Tally
    approvers: frozenset[str]
    expires_at: datetime

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


class UpgradeService:
    def __init__(
        self,
        *,
        catalog: Catalog,
        inventory: Inventory,
        ports: Ports,
        store: Store,
        directory: Directory,
    ) -> None:
        self.catalog = catalog
        self.inventory = inventory
        self.store = store
        self._ports = ports
        self._directory = directory
        self._planner = Planner(catalog, inventory, ports)
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}
        self._groups_lock = threading.Lock()

    @property
    def clock(self) -> Clock:
        return self._ports.clock

    # -- planning and requests ------------------------------------------------------------------

    def plan(self, request: UpgradeRequest) -> Plan:
        plan = self._planner.build(request)
        self._check_unlocked(plan.environment)
        return plan

    def request(self, request: UpgradeRequest, *, requester: str) -> Approval:
        """Plan, store the run and open it for approval (approved at once if none is needed)."""
        plan = self.plan(request)
        now = self.clock.now()
        run = self.store.create(plan, requested_by=requester, at=now)
        run = self.store.transition(
            run.id,
            RunState.PLANNED,
            RunState.AWAITING_APPROVAL,
            at=now,
            actor=requester,
            reason=f"plan {plan.digest}",
        )
        approval = self.approval(run)
        if approval.tally.approved:  # the policy needs no approval here
            run = self.store.transition(
                run.id,
                run.state,
                RunState.APPROVED,
                at=now,
                actor="policy",
                reason="no approval required",
            )
            approval = replace(approval, run=run)
        return approval

    # -- approval -------------------------------------------------------------------------------

    def policy(self, environment: str) -> Policy:
        return self.inventory.environment(environment).policy

    def approvers(self, environment: str) -> frozenset[str]:
        policy = self.policy(environment)
        members: set[str] = set(policy.approvers)
        for group in policy.approver_groups:
            members |= self._group_members(group)
        return frozenset(members)

    def approval(self, run: Run) -> Approval:
        policy = self.policy(run.plan.environment)
        approvers = self.approvers(run.plan.environment)
        counted = tally(
            policy,
            approvers,
            requester=run.requested_by,
            digest=run.plan.digest,
            votes=self.store.votes(run.id),
        )
        if not policy.allow_self_approval:
            approvers = approvers - {run.requested_by}
        expires = run.created_at + timedelta(minutes=policy.approval_expiry_minutes)
        return Approval(run=run, tally=counted, approvers=approvers, expires_at=expires)

    def vote(
        self, run_id: int, *, user: str, decision: Decision, digest: str | None, via: str
    ) -> VoteOutcome:
        """Count a vote. Raises a `UserError` for the voter when it cannot count."""
        run = self.store.get(run_id)
        if digest is not None and digest != run.plan.digest:
            raise NotAllowed(
                f"That vote was for another plan than run #{run_id}'s current one.",
                "Vote on the plan message of the run.",
            )
        self._check_open(run, "votes")
        policy = self.policy(run.plan.environment)
        check_voter(
            policy,
            self.approvers(run.plan.environment),
            environment=run.plan.environment,
            requester=run.requested_by,
            user=user,
            decision=decision,
        )
        counted = self.store.add_vote(
            Vote(
                run_id=run_id,
                user=user,
                decision=decision,
                plan_digest=run.plan.digest,
                at=self.clock.now(),
                via=via,
            )
        )
        approval = self.approval(run)
        approved = rejected = False
        if approval.tally.rejected or approval.tally.approved:
            target = RunState.REJECTED if approval.tally.rejected else RunState.APPROVED
            who = (
                approval.tally.rejected_by
                if approval.tally.rejected
                else approval.tally.approved_by
            )
            try:
                run = self.store.transition(
                    run_id,
                    RunState.AWAITING_APPROVAL,
                    target,
                    at=self.clock.now(),
                    actor=user,
                    reason=f"{target.value} by {', '.join(who)}",
                )
            except InvalidTransition:
                run = self.store.get(run_id)  # another vote got there first: nothing to do twice
            else:
                approved, rejected = target is RunState.APPROVED, target is RunState.REJECTED
            approval = replace(approval, run=run)
        return VoteOutcome(
            approval=approval, counted=counted, now_approved=approved, now_rejected=rejected
        )

    def withdraw(self, run_id: int, *, user: str, decision: Decision) -> Approval | None:
        """Withdraw a vote while the run awaits approval; None if there was nothing to withdraw."""
        run = self.store.get(run_id)
        if run.state is not RunState.AWAITING_APPROVAL:
            return None  # too late: the run was decided; a removed reaction changes nothing now
        if not self.store.remove_vote(run_id, user, decision):
            return None
        return self.approval(run)

    def expire_due(self) -> list[Run]:
        """Expire every run whose approval request outlived its policy's expiry."""
        now, expired = self.clock.now(), []
        for run in self.store.runs(states=(RunState.AWAITING_APPROVAL,), limit=1000):
            if self.approval(run).expires_at <= now:
                try:
                    expired.append(
                        self.store.transition(
                            run.id,
                            run.state,
                            RunState.EXPIRED,
                            at=now,
                            actor="bot",
                            reason="no decision before the approval request expired",
                        )
                    )
                except InvalidTransition:
                    continue  # decided meanwhile
        return expired

    # -- running --------------------------------------------------------------------------------

    def execute(self, run_id: int, observer: RunObserver | None = None) -> Run:
        """Run an approved run to its end (refused in a locked environment)."""
        run = self.store.get(run_id)
        lock = self._lock_of(run.plan.environment)
        if lock is not None:
            return self.store.transition(
                run_id,
                run.state,
                RunState.CANCELLED,
                at=self.clock.now(),
                actor="bot",
                reason=str(EnvironmentLocked(lock)),
            )
        runner = Runner(self.store, self.inventory, self._ports, observer)
        return runner.execute(run_id, actor="bot")

    def cancel(self, run_id: int, *, user: str) -> Run:
        run = self.store.get(run_id)
        if user != run.requested_by and user not in self.approvers(run.plan.environment):
            raise NotAllowed(
                f"Only the requester or an approver of {run.plan.environment} may "
                f"cancel run #{run_id}.",
                "Ask one of them.",
            )
        return self.store.transition(
            run_id,
            run.state,
            RunState.CANCELLED,
            at=self.clock.now(),
            actor=user,
            reason=f"cancelled by {user}",
        )

    # -- reading --------------------------------------------------------------------------------

    def run(self, run_id: int) -> Run:
        return self.store.get(run_id)

    def active(self) -> list[Run]:
        return self.store.runs(states=(*ACTIVE_STATES, RunState.APPROVED), limit=50)

    def awaiting(self) -> list[Approval]:
        return [self.approval(r) for r in self.store.runs(states=(RunState.AWAITING_APPROVAL,))]

    def history(
        self, *, product: str | None = None, environment: str | None = None, limit: int = 10
    ) -> list[Run]:
        name = self.catalog.find(product).product if product else None
        if environment:
            self.inventory.environment(environment)  # an unknown name gets its sentence
        runs = self.store.runs(limit=500)
        chosen = [
            r
            for r in runs
            if (name is None or r.plan.product == name)
            and (environment is None or r.plan.environment == environment)
        ]
        return chosen[:limit]

    # -- locks ----------------------------------------------------------------------------------

    def lock(self, environment: str, *, user: str, reason: str) -> EnvLock:
        self.inventory.environment(environment)
        return self.store.lock(
            EnvLock(environment=environment, locked_by=user, reason=reason, at=self.clock.now())
        )

    def unlock(self, environment: str, *, user: str) -> EnvLock | None:
        self.inventory.environment(environment)
        return self.store.unlock(environment)

    def _lock_of(self, environment: str) -> EnvLock | None:
        return next((lock for lock in self.store.locks() if lock.environment == environment), None)

    def _check_unlocked(self, environment: str) -> None:
        lock = self._lock_of(environment)
        if lock is not None:
            raise EnvironmentLocked(lock)

    def _check_open(self, run: Run, what: str) -> None:
        if run.state is not RunState.AWAITING_APPROVAL:
            raise InvalidTransition(
                f"Run #{run.id} is {run.state.value.replace('_', ' ')}; "
                f"{what} no longer change it.",
                f"See `/upgrade status {run.id}`.",
            )

    def _group_members(self, group: str) -> frozenset[str]:
        """Group members, cached for a few minutes; on a lookup failure the last known list."""
        with self._groups_lock:
            cached = self._groups.get(group)
        if cached and time.monotonic() - cached[0] < GROUP_CACHE_SECONDS:
            return cached[1]
        try:
            members = self._directory.group_members(group)
        except OperationalError:
            if cached:
                return cached[1]
            raise
        with self._groups_lock:
            self._groups[group] = (time.monotonic(), members)
        return members
