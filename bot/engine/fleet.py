"""A fleet: the same upgrade on several instances, the canary first, then in batches.

Each member is a run of its own (its plan was approved as part of the fleet's), executed by the
ordinary runner with its own rollback. The fleet run records one step per member, so its progress
and report list which instances are upgraded, which failed, and which were never started. The
first batch with a member that did not succeed stops the fleet; the members already upgraded stay
upgraded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from bot.domain.inventory import Inventory
from bot.domain.plan import PlannedStep
from bot.domain.ports import RunStore
from bot.domain.run import Phase, Run, RunState, StepResult, StepStatus
from bot.engine.runner import Runner, RunObserver, SilentObserver
from bot.engine.session import Ports

log = logging.getLogger(__name__)

MemberObserver = Callable[[Run], RunObserver]  # the observer of one member's run


class FleetRunner:
    def __init__(
        self,
        store: RunStore,
        inventory: Inventory,
        ports: Ports,
        observer: RunObserver | None = None,
        member_observer: MemberObserver | None = None,
    ) -> None:
        self._store = store
        self._inventory = inventory
        self._ports = ports
        self._observer: RunObserver = observer or SilentObserver()
        self._member_observer = member_observer or (lambda run: SilentObserver())

    def execute(self, run_id: int, *, actor: str) -> Run:
        fleet = self._move(self._store.get(run_id), RunState.RUNNING, actor, "started")
        steps = fleet.plan.steps
        batches = [steps[:1]] + [
            steps[i : i + fleet.plan.batch_size]
            for i in range(1, len(steps), fleet.plan.batch_size)
        ]
        for batch in batches:
            with ThreadPoolExecutor(max_workers=len(batch)) as pool:
                results = list(pool.map(lambda planned: self._member(fleet, planned), batch))
            failed = [r for r in results if r.status is not StepStatus.SUCCEEDED]
            if failed:
                done = [
                    s.step.id
                    for s in steps[: steps.index(batch[-1]) + 1]
                    if s.step.id not in {r.step_id for r in failed}
                ]
                left = [s.step.id for s in steps[steps.index(batch[-1]) + 1 :]]
                reason = (
                    f"stopped: {', '.join(f'{r.step_id} ({r.error})' for r in failed)}; "
                    f"upgraded: {', '.join(done) or 'none'}; "
                    f"not started: {', '.join(left) or 'none'}"
                )
                run = self._move(fleet, RunState.FAILED, actor, reason)
                self._observer.finished(run)
                return run
        run = self._move(fleet, RunState.SUCCEEDED, actor, "every instance upgraded and verified")
        self._observer.finished(run)
        return run

    def _member(self, fleet: Run, planned: PlannedStep) -> StepResult:
        """Create, approve (as part of the fleet) and execute one member's run."""
        clock = self._ports.clock
        started = StepResult(
            run_id=fleet.id,
            phase=Phase.UPGRADE,
            number=planned.number,
            step_id=planned.step.id,
            title=planned.step.title,
            status=StepStatus.STARTED,
            started_at=clock.now(),
        )
        self._store.record_step(started)
        self._observer.step_started(fleet, Phase.UPGRADE, planned)
        member_plan = replace(fleet.plan.members[planned.number - 1], part_of=fleet.id, digest="")
        try:
            run = self._store.create(
                member_plan,
                requested_by=fleet.requested_by,
                at=clock.now(),
                approved_by=f"run #{fleet.id}",
                reason=f"approved as part of run #{fleet.id} (plan {fleet.plan.digest})",
            )
            runner = Runner(self._store, self._inventory, self._ports, self._member_observer(run))
            run = runner.execute(run.id, actor="bot")
            ok = run.state is RunState.SUCCEEDED
            error = "" if ok else f"run #{run.id} ended {run.state.value.replace('_', ' ')}"
        except Exception as exc:  # one member's trouble must not hide the others' outcomes
            log.exception("fleet run %s: member %s", fleet.id, planned.step.id)
            ok, error, run = False, f"could not run: {exc}", None
        result = replace(
            started,
            status=StepStatus.SUCCEEDED if ok else StepStatus.FAILED,
            finished_at=clock.now(),
            error=error,
            captures={"run": str(run.id)} if run else {},
        )
        self._store.record_step(result)
        self._observer.step_finished(fleet, result)
        return result

    def _move(self, run: Run, target: RunState, actor: str, reason: str) -> Run:
        moved = self._store.transition(
            run.id, run.state, target, at=self._ports.clock.now(), actor=actor, reason=reason
        )
        self._observer.state_changed(moved, reason)
        return moved
