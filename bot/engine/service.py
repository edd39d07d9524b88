"""The upgrade service: what every chat surface asks of the engine, in one place.

Requests become plans and runs awaiting approval; votes are checked against the policy and
counted; a run approved by enough approvers is ready to execute; runs waiting too long expire.
Nothing here knows about Slack or terminals: the surfaces render what these methods return.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bot.domain.approval import Decision, Vote, check_voter, tally
from bot.domain.conversation import EnvironmentLocked, EnvLock
from bot.domain.errors import InvalidTransition, OperationalError, UserError
from bot.domain.inventory import Inventory, Policy
from bot.domain.plan import Plan, PlannedStep
from bot.domain.ports import Clock, Directory, EventLog, LockStore, RunStore, ThreadStore, VoteStore
from bot.domain.run import ACTIVE_STATES, Run, RunState, StepStatus
from bot.domain.runbook import Catalog
from bot.domain.schedule import StartNotAllowed
from bot.engine.approvals import Approval, NotAllowed, VoteOutcome, gate_digest
from bot.engine.behind import Lag, behind_latest
from bot.engine.fleet import FleetRunner, MemberObserver
from bot.engine.planning import Planner, UpgradeRequest
from bot.engine.recovery import check_decision
from bot.engine.rollback_plan import rollback_plan
from bot.engine.runner import Fanout, Runner, RunObserver, SilentObserver
from bot.engine.session import Ports

GROUP_CACHE_SECONDS = 300.0


class Store(RunStore, VoteStore, EventLog, LockStore, ThreadStore, Protocol):
    """The bot's database as the service uses it."""


ROLLBACK_FROM = (RunState.SUCCEEDED, RunState.FAILED, RunState.ROLLBACK_FAILED)
PENDING_OR_DONE = (
    RunState.PLANNED,
    RunState.AWAITING_APPROVAL,
    RunState.APPROVED,
    RunState.RUNNING,
    RunState.WAITING,
    RunState.SUCCEEDED,
)


class UpgradeService:
    def __init__(
        self,
        *,
        catalog: Catalog,
        inventory: Inventory,
        ports: Ports,
        store: Store,
        directory: Directory,
        watchers: tuple[RunObserver, ...] = (),
    ) -> None:
        """`watchers` observe every run this service executes, besides each call's own observer
        (the metrics, say)."""
        self.catalog = catalog
        self.inventory = inventory
        self.store = store
        self._ports = ports
        self._directory = directory
        self._planner = Planner(catalog, inventory, ports)
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}
        self._groups_lock = threading.Lock()
        self._watchers = watchers

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
        return self.open(self.plan(request), requester)

    def open(self, plan: Plan, requester: str, *, starts_at: datetime | None = None) -> Approval:
        """Store a run of `plan` (to start at `starts_at`, or once approved) and open it for
        approval; approved at once if the policy needs none."""
        now = self.clock.now()
        run = self.store.create(plan, requested_by=requester, at=now, starts_at=starts_at)
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

    def request_rollback(self, run_id: int, *, requester: str) -> Approval:
        """Undo a finished run on request: a new run with its rollback steps, approved like
        an upgrade."""
        original = self.store.get(run_id)
        if original.state not in ROLLBACK_FROM:
            raise InvalidTransition(
                f"Run #{run_id} is {original.state.value.replace('_', ' ')}; only a run that "
                "succeeded, failed or whose rollback failed can be rolled back on request.",
                f"See `/upgrade status {run_id}`.",
            )
        for other in self.store.runs(limit=500):
            if other.plan.rollback_of == run_id and other.state in PENDING_OR_DONE:
                raise InvalidTransition(
                    f"Run #{other.id} already rolls back run #{run_id} "
                    f"({other.state.value.replace('_', ' ')}).",
                    f"See `/upgrade status {other.id}`.",
                )
        plan = rollback_plan(original, self.store.steps(run_id), self.clock.now())
        self._check_unlocked(plan.environment)
        return self.open(plan, requester)

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
        gate = self._gate(run)
        digest = gate_digest(run.plan.digest, gate.step.id) if gate else run.plan.digest
        counted = tally(
            policy,
            approvers,
            requester=run.requested_by,
            digest=digest,
            votes=self.store.votes(run.id),
        )
        if not policy.allow_self_approval:
            approvers = approvers - {run.requested_by}
        start = run.updated_at if gate else run.created_at
        expires = start + timedelta(minutes=policy.approval_expiry_minutes)
        if run.starts_at is not None and gate is None:
            expires = run.starts_at  # a scheduled run takes approvals until its start
        return Approval(
            run=run,
            tally=counted,
            approvers=approvers,
            expires_at=expires,
            digest=digest,
            gate=gate,
        )

    def _gate(self, run: Run) -> PlannedStep | None:
        """The gate step a waiting run waits at."""
        if run.state is not RunState.WAITING:
            return None
        waiting = [r for r in self.store.steps(run.id) if r.status is StepStatus.WAITING]
        return run.plan.step(waiting[-1].step_id) if waiting else None

    def vote(
        self, run_id: int, *, user: str, decision: Decision, digest: str | None, via: str
    ) -> VoteOutcome:
        """Count a vote on an approval request or a gate. Raises a `UserError` for the voter
        when it cannot count."""
        run = self.store.get(run_id)
        self._check_open(run, "votes")
        current = self.approval(run)
        if digest is not None and digest != current.digest:
            raise NotAllowed(
                f"That vote was for another plan or step than run #{run_id} waits for now.",
                "Vote on the latest request in the run's thread.",
            )
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
                plan_digest=current.digest,
                at=self.clock.now(),
                via=via,
            )
        )
        approval = self.approval(run)
        counts = approval.tally
        if counts.rejected:
            # a rejected gate fails the run there: the caller rolls back (long work, its pool)
            target = None if approval.gate else RunState.REJECTED
        else:
            target = RunState.RUNNING if approval.gate else RunState.APPROVED
        if target is None or not (counts.rejected or counts.approved):
            return VoteOutcome(
                approval=approval,
                counted=counted,
                now_approved=False,
                now_rejected=counts.rejected and approval.gate is not None,
            )
        who = counts.rejected_by if counts.rejected else counts.approved_by
        try:
            run = self.store.transition(
                run_id,
                run.state,
                target,
                at=self.clock.now(),
                actor=user,
                reason=f"{'rejected' if counts.rejected else 'approved'} by {', '.join(who)}",
            )
        except InvalidTransition:
            # another vote got there first: nothing to do twice
            return VoteOutcome(
                approval=replace(approval, run=self.store.get(run_id)),
                counted=counted,
                now_approved=False,
                now_rejected=False,
            )
        return VoteOutcome(
            approval=replace(approval, run=run),
            counted=counted,
            now_approved=not counts.rejected,
            now_rejected=counts.rejected,
        )

    def withdraw(self, run_id: int, *, user: str, decision: Decision) -> Approval | None:
        """Withdraw a vote while it can still matter; None if there was nothing to withdraw."""
        run = self.store.get(run_id)
        if run.state not in (RunState.AWAITING_APPROVAL, RunState.WAITING):
            return None  # too late: the run was decided; a removed reaction changes nothing now
        digest = self.approval(run).digest
        if not self.store.remove_vote(run_id, user, decision, digest):
            return None
        return self.approval(run)

    def expire_due(self) -> list[Run]:
        """Expire every run whose approval request outlived its policy's expiry. A scheduled run
        is left to its start, which says why it does not start if it is still unapproved."""
        now, expired = self.clock.now(), []
        for run in self.store.runs(states=(RunState.AWAITING_APPROVAL,), limit=1000):
            if run.starts_at is None and self.approval(run).expires_at <= now:
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

    def execute(
        self,
        run_id: int,
        observer: RunObserver | None = None,
        member_observer: MemberObserver | None = None,
    ) -> Run:
        """Run an approved run to its end or its first gate. Refused (the run is cancelled, with
        the reason) in a locked environment, and outside its windows or inside a freeze."""
        run = self.store.get(run_id)
        refusal = self._refusal(run)
        if refusal:
            return self.store.transition(
                run_id,
                run.state,
                RunState.CANCELLED,
                at=self.clock.now(),
                actor="bot",
                reason=refusal,
            )
        if run.plan.members:
            members = member_observer or (lambda member: SilentObserver())
            fleet = FleetRunner(
                self.store,
                self.inventory,
                self._ports,
                self._watched(observer),
                lambda member: self._watched(members(member)),
            )
            return fleet.execute(run_id, actor="bot")
        return self._runner(observer).execute(run_id, actor="bot")

    def resume(self, run_id: int, observer: RunObserver | None = None) -> Run:
        """Go on after a gate that was approved."""
        return self._runner(observer).resume(run_id, actor="bot")

    def decide_interrupted(self, run_id: int, *, user: str, resume: bool) -> Run:
        """An approver decides how an interrupted run goes on: resumed from the step left in
        doubt (`resume`), or rolled back. Moves the run, so this process holds it; then
        `go_on` drives it. A run interrupted while rolling back can only roll back further."""
        run = self.store.get(run_id)
        if run.state is not RunState.INTERRUPTED:
            raise InvalidTransition(
                f"Run #{run_id} is {run.state.value.replace('_', ' ')}, not interrupted.",
                f"See `/upgrade status {run_id}`.",
            )
        environment = run.plan.environment
        if user not in self.approvers(environment):
            raise NotAllowed(
                f"Only an approver of {environment} may decide how interrupted run #{run_id} "
                "goes on.",
                "Ask one of them.",
            )
        check_decision(run, self.store.steps(run_id), resume=resume)
        if resume and (refusal := self._refusal(run)):
            raise UserError(f"Run #{run_id} cannot resume now. {refusal}", "")
        verb = "resume it from the step left in doubt" if resume else "roll it back"
        return self.store.transition(
            run_id,
            RunState.INTERRUPTED,
            RunState.RUNNING if resume else RunState.ROLLING_BACK,
            at=self.clock.now(),
            actor=user,
            reason=f"{user} decided to {verb}",
        )

    def go_on(self, run_id: int, observer: RunObserver | None = None) -> Run:
        """Drive an interrupted run as `decide_interrupted` moved it: resumed, or rolled back."""
        runner = self._runner(observer)
        if self.store.get(run_id).state is RunState.ROLLING_BACK:
            return runner.roll_back_interrupted(run_id, actor="bot")
        return runner.resume_interrupted(run_id, actor="bot")

    def reject_gate(self, run_id: int, observer: RunObserver | None = None) -> Run:
        """Fail a run at the gate it waits at, rolling that host back where the runbook says."""
        run = self.store.get(run_id)
        if run.state is not RunState.WAITING:
            return run  # another rejection got there first
        approval = self.approval(run)
        who = ", ".join(approval.tally.rejected_by) or "an approver"
        step = approval.gate.step.id if approval.gate else "?"
        reason = f"Stopped at the gate `{step}` by {who}."
        return self._runner(observer).fail_at_gate(run_id, actor="bot", reason=reason)

    def _refusal(self, run: Run) -> str:
        """Why `run` may not start now, or "". A rollback is never held back by a window or a
        freeze: undoing a change is what they are there to allow."""
        lock = self._lock_of(run.plan.environment)
        if lock is not None:
            return str(EnvironmentLocked(lock))
        if run.plan.rollback_of is not None:
            return ""
        try:
            self.policy(run.plan.environment).calendar.check(
                self.clock.now(), environment=run.plan.environment, zone=UTC
            )
        except StartNotAllowed as exc:
            return f"It may not start now: {exc.problem}"
        return ""

    def _runner(self, observer: RunObserver | None) -> Runner:
        return Runner(self.store, self.inventory, self._ports, self._watched(observer))

    def _watched(self, observer: RunObserver | None) -> RunObserver:
        return Fanout(observer or SilentObserver(), *self._watchers)

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
        """Runs holding an instance, and approved runs about to start (not those waiting for a
        start time)."""
        runs = self.store.runs(states=(*ACTIVE_STATES, RunState.APPROVED), limit=50)
        return [r for r in runs if r.state is not RunState.APPROVED or r.starts_at is None]

    def awaiting(self) -> list[Approval]:
        states = (RunState.AWAITING_APPROVAL, RunState.WAITING)
        return [self.approval(r) for r in self.store.runs(states=states)]

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

    def behind_latest(self) -> list[Lag]:
        """Instances behind the newest version their registry (or runbook) offers."""
        return behind_latest(self.catalog, self.inventory, self._planner)

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
        if run.state not in (RunState.AWAITING_APPROVAL, RunState.WAITING):
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
