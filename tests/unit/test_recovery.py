"""Runs whose process stopped: taken over as interrupted, then resumed or rolled back only as an
approver decides; and a process that lost its claim runs no further step."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.domain.approval import Decision
from bot.domain.errors import UserError
from bot.domain.inventory import Policy
from bot.domain.run import Phase, RunState, StepStatus
from bot.engine.approvals import NotAllowed
from bot.engine.planning import UpgradeRequest
from bot.engine.recovery import ClaimKeeper, take_over_lapsed
from bot.engine.runner import IN_DOUBT, SilentObserver
from bot.engine.service import UpgradeService
from tests.unit.memory_world import BACKUP, IN_PLACE, MemoryWorld, console_page, myst_world

POLICY = Policy(approvers=("U2",), approvals_required=1)
CLAIM = 30  # seconds: the memory store's default claim


class _Dies(SilentObserver):
    """The process dies as step `step_id` starts: the run is left running with that step open.
    (The exception stands for the death; the claim is left to run out.)"""

    def __init__(self, step_id: str) -> None:
        self.step_id = step_id

    def step_started(self, run, phase, planned):  # type: ignore[no-untyped-def]
        if planned.step.id == self.step_id:
            raise SystemExit("the process died")


def _interrupted_at(world: MemoryWorld, step_id: str) -> tuple[UpgradeService, int]:
    """An approved upgrade whose process died at `step_id`, taken over by another process."""
    service = world.service()
    approval = service.request(UpgradeRequest(product="myst", version="3.9.1"), requester="U1")
    service.vote(approval.run.id, user="U2", decision=Decision.APPROVE, digest=None, via="t")
    with pytest.raises(SystemExit):
        service.execute(approval.run.id, _Dies(step_id))
    world.clock.advance(CLAIM + 1)
    [run] = take_over_lapsed(world.store.another_process("bot-b"), world.clock)
    assert run.state is RunState.INTERRUPTED
    return service, run.id


def test_a_run_whose_process_died_is_taken_over_naming_the_step_in_doubt():
    world = myst_world(POLICY)
    _, run_id = _interrupted_at(world, "stop")
    event = world.store.events(run_id)[-1]
    assert "step 4 `stop` (upgrade) was running" in event.reason
    assert "unknown" in event.reason
    assert event.actor == "bot (bot-b)"
    assert not any("stop.sh" in c for c in world.shell.commands)  # nothing was re-run


def test_a_run_of_a_live_process_is_left_alone():
    world = myst_world(POLICY)
    service = world.service()
    approval = service.request(UpgradeRequest(product="myst", version="3.9.1"), requester="U1")
    run_id = approval.run.id
    world.store.transition(
        run_id, RunState.AWAITING_APPROVAL, RunState.APPROVED, at=world.clock.now(), actor="U2"
    )
    world.store.transition(
        run_id, RunState.APPROVED, RunState.RUNNING, at=world.clock.now(), actor="bot"
    )
    world.clock.advance(CLAIM - 1)
    assert take_over_lapsed(world.store.another_process("bot-b"), world.clock) == []
    assert world.store.get(run_id).state is RunState.RUNNING


def test_a_process_that_lost_its_claim_runs_no_further_step():
    world = myst_world(POLICY)
    world.http.set_page("http://myst-prod.test/console/", console_page("3.9.0.3"))
    other = world.store.another_process("bot-b")

    class Stalls(SilentObserver):
        """This process stalls in `backup` past its claim; another takes the run over."""

        def step_started(self, run, phase, planned):  # type: ignore[no-untyped-def]
            if planned.step.id == "backup":
                world.clock.advance(CLAIM + 1)
                assert take_over_lapsed(other, world.clock)

    service = world.service()
    approval = service.request(UpgradeRequest(product="myst", version="3.9.1"), requester="U1")
    service.vote(approval.run.id, user="U2", decision=Decision.APPROVE, digest=None, via="t")
    run = service.execute(approval.run.id, Stalls())
    assert run.state is RunState.INTERRUPTED
    ran = [s.step_id for s in world.store.steps(run.id)]
    assert ran == ["pull", "backup"]  # backup finished; nothing after it started
    assert not any(c.startswith("test -s") for c in world.shell.commands)


def test_an_approver_resumes_from_the_step_left_in_doubt():
    world = myst_world(POLICY)
    service, run_id = _interrupted_at(world, "stop")
    with pytest.raises(NotAllowed, match="Only an approver of prod"):
        service.decide_interrupted(run_id, user="U1", resume=True)
    service.decide_interrupted(run_id, user="U2", resume=True)
    run = service.go_on(run_id)
    assert run.state is RunState.SUCCEEDED
    steps = world.store.steps(run_id)
    assert [s.step_id for s in steps] == IN_PLACE
    assert all(s.status is StepStatus.SUCCEEDED for s in steps)
    assert sum("pull.sh" in c for c in world.shell.commands) == 1  # done steps are not redone
    assert sum("stop.sh" in c for c in world.shell.commands) == 1  # the one in doubt, once


def test_an_approver_rolls_an_interrupted_run_back_with_what_it_captured():
    world = myst_world(POLICY)
    service, run_id = _interrupted_at(world, "start")
    world.http.set_page("http://myst-prod.test/console/", console_page("3.9.0.3"))
    service.decide_interrupted(run_id, user="U2", resume=False)
    run = service.go_on(run_id)
    assert run.state is RunState.ROLLED_BACK
    steps = world.store.steps(run_id)
    in_doubt = next(s for s in steps if s.step_id == "start")
    assert (in_doubt.status, in_doubt.error) == (StepStatus.FAILED, IN_DOUBT)
    assert [s.step_id for s in steps if s.phase is Phase.ROLLBACK] == [
        "retag-previous",
        "restore-database",
        "rollback-startup-log",
        "rollback-console",
    ]
    assert f"/opt/myst-studio/bin/update-database.sh {BACKUP}" in world.shell.commands


def test_an_interrupted_rollback_only_rolls_back_further_and_skips_what_it_finished():
    world = myst_world(POLICY)
    world.http.set_page("http://myst-prod.test/console/", console_page("3.9.0.3"))
    world.shell.on(r"/bin/output-logs\.sh", stdout="ERROR at start\n", exit_code=1)
    service = world.service()
    approval = service.request(UpgradeRequest(product="myst", version="3.9.1"), requester="U1")
    service.vote(approval.run.id, user="U2", decision=Decision.APPROVE, digest=None, via="t")
    with pytest.raises(SystemExit):
        service.execute(approval.run.id, _Dies("restore-database"))
    world.clock.advance(CLAIM + 1)
    [run] = take_over_lapsed(world.store.another_process("bot-b"), world.clock)
    with pytest.raises(UserError, match="only roll back further"):
        service.decide_interrupted(run.id, user="U2", resume=True)
    world.shell.on(r"/bin/output-logs\.sh", stdout="MyST Studio 3.9.0.3 started\n", exit_code=None)
    service.decide_interrupted(run.id, user="U2", resume=False)
    assert service.go_on(run.id).state is RunState.ROLLED_BACK
    rollback = [s for s in world.store.steps(run.id) if s.phase is Phase.ROLLBACK]
    assert [s.step_id for s in rollback] == [
        "retag-previous",
        "restore-database",
        "rollback-startup-log",
        "rollback-console",
    ]
    assert all(s.status is StepStatus.SUCCEEDED for s in rollback)
    taken_over = next(e for e in world.store.events(run.id) if e.to_state is RunState.INTERRUPTED)
    assert rollback[0].started_at < taken_over.at <= rollback[1].started_at  # retag not redone


def test_a_run_that_changed_nothing_yet_has_nothing_to_roll_back():
    world = myst_world(POLICY)
    service = world.service()
    plan = service.plan(UpgradeRequest(product="myst", version="3.9.1"))
    plan = replace(plan, steps=plan.steps[1:], digest="")  # no pull: backup first, no change
    approval = service.open(plan, "U1")
    service.vote(approval.run.id, user="U2", decision=Decision.APPROVE, digest=None, via="t")
    with pytest.raises(SystemExit):
        service.execute(approval.run.id, _Dies("check-backup"))
    world.clock.advance(CLAIM + 1)
    [run] = take_over_lapsed(world.store.another_process("bot-b"), world.clock)
    with pytest.raises(UserError, match="changed nothing on its hosts yet") as caught:
        service.decide_interrupted(run.id, user="U2", resume=False)
    assert f"/upgrade resume {run.id}" in caught.value.fix
    assert world.store.get(run.id).state is RunState.INTERRUPTED


def test_the_keeper_renews_its_claims_and_tells_of_each_run_taken_over_once():
    world = myst_world(POLICY)
    service = world.service()
    approval = service.request(UpgradeRequest(product="myst", version="3.9.1"), requester="U1")
    run_id = approval.run.id
    now = world.clock.now()
    world.store.transition(
        run_id, RunState.AWAITING_APPROVAL, RunState.APPROVED, at=now, actor="U2"
    )
    world.store.transition(run_id, RunState.APPROVED, RunState.RUNNING, at=now, actor="bot")
    told: list[int] = []
    mine = ClaimKeeper(
        world.store, world.clock, interval=10, on_interrupted=lambda r: told.append(r.id)
    )
    theirs = ClaimKeeper(
        world.store.another_process("bot-b"),
        world.clock,
        interval=10,
        on_interrupted=lambda r: told.append(r.id),
    )
    for _ in range(6):  # a minute of beats: this process keeps renewing
        world.clock.advance(10)
        mine.tick()
        theirs.tick()
    assert told == []
    world.clock.advance(CLAIM + 1)  # this process stops beating
    theirs.tick()
    theirs.tick()
    assert told == [run_id]
    assert world.store.get(run_id).state is RunState.INTERRUPTED
