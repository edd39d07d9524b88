"""A fleet: the canary first, then batches, stopping at the first failure."""

from datetime import UTC, datetime

from bot.console.session import NoDirectory
from bot.domain.approval import Decision
from bot.domain.inventory import Policy
from bot.domain.run import RunState, StepStatus
from bot.engine.planning import UpgradeRequest
from bot.engine.runner import SilentObserver
from bot.engine.service import UpgradeService
from bot.runbooks import BUNDLED, load_runbooks
from tests.unit.memory_world import FleetWorld, fleet_world

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def _service(world: FleetWorld) -> UpgradeService:
    world.policy = Policy(approvers=("U2",), approvals_required=1)
    return UpgradeService(
        catalog=load_runbooks(BUNDLED),
        inventory=world.inventory,
        ports=world.ports,
        store=world.store,
        directory=NoDirectory(),
    )


def _fleet_run(service: UpgradeService, observer=None):  # type: ignore[no-untyped-def]
    approval = service.request(
        UpgradeRequest(product="myst", version="3.9.1", environment="prod"), requester="U1"
    )
    service.vote(approval.run.id, user="U2", decision=Decision.APPROVE, digest=None, via="t")
    return service.execute(approval.run.id, member_observer=observer)


def test_several_instances_make_one_fleet_plan_with_the_canary_first():
    world = fleet_world(count=5, batch_size=2)
    plan = _service(world).plan(UpgradeRequest(product="myst", version="3.9.1"))
    assert [m.instance for m in plan.members] == ["myst-1", "myst-2", "myst-3", "myst-4", "myst-5"]
    assert plan.steps[0].step.title == "Upgrade myst-1 (the canary)"
    assert plan.batch_size == 2
    assert plan.instance_key == "prod/*"


def test_the_canary_then_batches_of_the_configured_size():
    world = fleet_world(count=5, batch_size=2)
    service = _service(world)
    order: list[tuple[str, float]] = []

    class Record(SilentObserver):
        def __init__(self, member) -> None:  # type: ignore[no-untyped-def]
            self.member = member

        def state_changed(self, run, reason):  # type: ignore[no-untyped-def]
            if run.state is RunState.RUNNING:
                order.append(run.plan.instance)

    run = _fleet_run(service, Record)
    assert run.state is RunState.SUCCEEDED
    assert order[0] == "myst-1"  # the canary alone first
    assert sorted(order[1:3]) == ["myst-2", "myst-3"]
    assert sorted(order[3:5]) == ["myst-4", "myst-5"]
    members = [r for r in world.store.runs(limit=50) if r.plan.part_of == run.id]
    assert len(members) == 5
    assert all(m.state is RunState.SUCCEEDED for m in members)


def test_the_fleet_stops_at_the_first_failed_batch_and_lists_what_happened():
    world = fleet_world(count=5, batch_size=2)
    world.shells.shell("myst-3").on(r"/bin/backup-database\.sh", exit_code=1, stderr="full\n")
    service = _service(world)
    run = _fleet_run(service)
    assert run.state is RunState.FAILED
    steps = {s.step_id: s for s in world.store.steps(run.id)}
    assert steps["myst-1"].status is StepStatus.SUCCEEDED
    assert steps["myst-2"].status is StepStatus.SUCCEEDED  # same batch: it finished
    assert steps["myst-3"].status is StepStatus.FAILED
    assert "myst-4" not in steps  # never started
    reason = world.store.events(run.id)[-1].reason
    assert "upgraded: myst-1, myst-2" in reason
    assert "not started: myst-4, myst-5" in reason


def test_a_failed_canary_stops_everything():
    world = fleet_world(count=3, batch_size=3)
    world.http.set_page("http://myst-1.test/console/", "<footer>Version 3.9.0.3</footer>")
    run = _fleet_run(_service(world))
    assert run.state is RunState.FAILED
    assert [s.step_id for s in world.store.steps(run.id)] == ["myst-1"]
