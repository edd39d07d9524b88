"""Roles, options, conditions and gates, on the phased strategy against the in-memory twins."""

from datetime import UTC, datetime

import pytest

from bot.domain.errors import UnknownInstance
from bot.domain.run import Phase, RunState, StepStatus
from bot.engine.planning import UnknownOption, UpgradeRequest
from bot.engine.runner import SilentObserver
from tests.unit.memory_world import (
    NONPROD_BACKUP,
    NONPROD_CONSOLE,
    console_page,
    myst_world,
    phased_world,
)

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def _plan(world, **options):  # type: ignore[no-untyped-def]
    request = UpgradeRequest(product="myst", version="3.9.1", strategy="phased", options=options)
    return world.planner().build(request)


def _approved(world, plan) -> int:  # type: ignore[no-untyped-def]
    run = world.store.create(plan, requested_by="U1", at=NOW)
    for before, after in (
        (RunState.PLANNED, RunState.AWAITING_APPROVAL),
        (RunState.AWAITING_APPROVAL, RunState.APPROVED),
    ):
        world.store.transition(run.id, before, after, at=NOW, actor="U2")
    return run.id


def test_a_strategy_names_the_peer_it_needs():
    with pytest.raises(UnknownInstance, match=r"needs a `nonprod`.*peers: \{nonprod"):
        _plan(myst_world())


def test_steps_run_on_their_role_and_show_where():
    plan = _plan(phased_world())
    pull = plan.step("nonprod-pull")
    assert pull.target == "nonprod/myst-test"
    assert plan.step("pull").target == ""
    assert plan.roles == {"nonprod": "nonprod/myst-test"}
    assert plan.role_variables["nonprod"]["console_url"] == NONPROD_CONSOLE
    assert plan.variables["nonprod_instance"] == "myst-test"  # other roles' values, prefixed


def test_options_choose_steps_at_plan_time():
    plain = {p.step.id for p in _plan(phased_world()).steps}
    with_data = {p.step.id for p in _plan(phased_world(), prod_data="yes").steps}
    assert "nonprod-restart" in plain
    assert "prod-data-copy" not in plain
    assert {"prod-data-backup", "prod-data-copy", "nonprod-load-prod-data"} <= with_data
    assert "nonprod-restart" not in with_data
    assert _plan(phased_world()).digest != _plan(phased_world(), prod_data="yes").digest


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"prod_date": "yes"}, "`prod_date=` is not an option of the phased strategy"),
        ({"prod_data": "maybe"}, "`prod_data=maybe` is neither yes nor no"),
    ],
)
def test_bad_options_are_named(options, message):
    with pytest.raises(UnknownOption, match=message):
        _plan(phased_world(), **options)


def test_the_run_waits_at_the_gate_and_goes_on_when_resumed():
    world = phased_world()
    run_id = _approved(world, _plan(world))
    run = world.runner().execute(run_id, actor="bot")
    assert run.state is RunState.WAITING
    steps = world.store.steps(run_id)
    assert steps[-1].step_id == "go-to-production"
    assert steps[-1].status is StepStatus.WAITING
    assert not any("myst-prod" in c for c in world.shell.commands)  # production not touched
    world.store.transition(run_id, RunState.WAITING, RunState.RUNNING, at=NOW, actor="U2")
    run = world.runner().resume(run_id, actor="bot")
    assert run.state is RunState.SUCCEEDED
    gate = next(s for s in world.store.steps(run_id) if s.step_id == "go-to-production")
    assert gate.status is StepStatus.SUCCEEDED
    assert any("stop.sh" in c for c in world.shell.commands)


def test_failure_on_production_rolls_back_production_only():
    world = phased_world()
    run_id = _approved(world, _plan(world))
    world.runner().execute(run_id, actor="bot")
    world.store.transition(run_id, RunState.WAITING, RunState.RUNNING, at=NOW, actor="U2")
    world.http.set_page("http://myst-prod.test/console/", console_page("3.9.0.3"))
    run = world.runner().resume(run_id, actor="bot")
    assert run.state is RunState.ROLLED_BACK
    rolled = [s.step_id for s in world.store.steps(run_id) if s.phase is Phase.ROLLBACK]
    assert rolled == [
        "retag-previous",
        "restore-database",
        "rollback-startup-log",
        "rollback-console",
    ]


def test_a_rejected_gate_rolls_back_the_changed_twin():
    world = phased_world()
    run_id = _approved(world, _plan(world))
    world.runner().execute(run_id, actor="bot")

    class NonprodBackOnOldVersion(SilentObserver):
        def step_started(self, run, phase, planned):  # type: ignore[no-untyped-def]
            if planned.step.id == "nonprod-restore-database":
                world.http.set_page(NONPROD_CONSOLE, console_page("3.9.0.3"))

    run = world.runner(NonprodBackOnOldVersion()).fail_at_gate(
        run_id, actor="bot", reason="not good enough"
    )
    assert run.state is RunState.ROLLED_BACK
    twin = world.shells.shell("myst-test")
    assert f"/opt/myst-studio/bin/update-database.sh {NONPROD_BACKUP}" in twin.commands


def test_a_failure_on_production_before_the_gate_rolls_back_non_production():
    """Production's fresh backup for the test fails: non-production has only been pulled, and
    nobody has accepted it at the gate, so its tag is put back; production changed nothing."""
    world = phased_world()
    world.shells.shell("myst-prod").on(r"/bin/backup-database\.sh", exit_code=1, stderr="full\n")
    world.http.set_page(NONPROD_CONSOLE, console_page("3.9.0.3"))  # never restarted
    run = world.runner().execute(_approved(world, _plan(world, prod_data="yes")), actor="bot")
    assert run.state is RunState.ROLLED_BACK
    rolled = [s.step_id for s in world.store.steps(run.id) if s.phase is Phase.ROLLBACK]
    assert rolled == ["nonprod-retag-previous", "nonprod-rollback-console"]
