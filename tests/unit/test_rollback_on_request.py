"""Undoing a finished run on request: a new plan, approved like an upgrade, then run."""

from dataclasses import replace

import pytest

from bot.domain.approval import Decision
from bot.domain.errors import InvalidTransition, UserError
from bot.domain.inventory import Policy
from bot.domain.run import RunState
from bot.engine.planning import UpgradeRequest
from bot.engine.report import build_report
from bot.engine.service import UpgradeService
from tests.unit.memory_world import BACKUP, MemoryWorld, console_page, myst_world

POLICY = Policy(approvers=("U2",), approvals_required=1)


def _run(service: UpgradeService, approval) -> int:  # type: ignore[no-untyped-def]
    service.vote(approval.run.id, user="U2", decision=Decision.APPROVE, digest=None, via="t")
    return service.execute(approval.run.id).id


def _upgraded(world: MemoryWorld, service: UpgradeService) -> int:
    approval = service.request(UpgradeRequest(product="myst", version="3.9.1"), requester="U1")
    run_id = _run(service, approval)
    assert service.run(run_id).state is RunState.SUCCEEDED
    return run_id


def test_a_succeeded_upgrade_can_be_rolled_back_on_request():
    world = myst_world(POLICY)
    service = world.service()
    upgrade = _upgraded(world, service)
    world.http.set_page("http://myst-prod.test/console/", console_page("3.9.0.3"))
    approval = service.request_rollback(upgrade, requester="U1")
    plan = approval.run.plan
    assert approval.run.state is RunState.AWAITING_APPROVAL  # approved like any plan
    assert plan.rollback_of == upgrade
    assert (plan.from_version, plan.to_version) == ("3.9.1", "3.9.0.3")
    assert [p.step.id for p in plan.steps] == [
        "retag-previous",
        "restore-database",
        "rollback-startup-log",
        "rollback-console",
    ]
    assert plan.steps[1].preview == f"/opt/myst-studio/bin/update-database.sh {BACKUP}"
    run_id = _run(service, approval)
    run = service.run(run_id)
    assert run.state is RunState.SUCCEEDED
    assert build_report(run, service.store.steps(run_id)).outcome == (
        "rolled back on request and verified"
    )


def test_a_run_that_changed_nothing_has_nothing_to_roll_back():
    world = myst_world(POLICY)
    world.shell.on(r"/bin/backup-database\.sh", exit_code=1, stderr="disk full\n")
    service = world.service()
    plan = service.plan(UpgradeRequest(product="myst", version="3.9.1"))
    # without `pull`, whose new tag is a change: the run fails at its first step, the backup
    plan = replace(plan, steps=plan.steps[1:], digest="")
    run_id = _run(service, service.open(plan, "U1"))
    assert service.run(run_id).state is RunState.FAILED
    with pytest.raises(UserError, match="changed nothing"):
        service.request_rollback(run_id, requester="U1")


def test_a_rolled_back_run_or_a_second_request_is_refused():
    world = myst_world(POLICY)
    service = world.service()
    upgrade = _upgraded(world, service)
    service.request_rollback(upgrade, requester="U1")
    with pytest.raises(InvalidTransition, match="already rolls back"):
        service.request_rollback(upgrade, requester="U1")
    with pytest.raises(InvalidTransition, match="only a run that succeeded"):
        service.request_rollback(2, requester="U1")  # the rollback run itself, still waiting


def test_a_failed_rollback_says_what_is_left_to_do_by_hand():
    world = myst_world(POLICY)
    world.http.set_page("http://myst-prod.test/console/", console_page("3.9.0.3"))
    world.shell.on(r"/bin/update-database\.sh", exit_code=1, stderr="cannot load backup\n")
    service = world.service()
    approval = service.request(UpgradeRequest(product="myst", version="3.9.1"), requester="U1")
    run = service.run(_run(service, approval))
    assert run.state is RunState.ROLLBACK_FAILED
    report = build_report(run, service.store.steps(run.id))
    assert report.outcome.startswith("failed, and the rollback failed")
    assert [m.split(" (on ")[0] for m in report.manual_steps] == [
        "Restore the database from this run's backup (stops and starts MyST Studio)",
        "Read the start-up log of the previous version",
        "Check the console shows the previous version again",
    ]
    assert f"update-database.sh {BACKUP}" in report.manual_steps[0]
    assert report.rollback_offered  # and a new rollback can be asked for
