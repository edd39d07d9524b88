"""The runner against the twins: order, persistence, captures, checks, refusals and rollback."""

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from adapters.memory.store import MemoryRunStore
from bot.domain.errors import InstanceBusy
from bot.domain.plan import PlannedStep
from bot.domain.run import Phase, RunState, StepStatus
from bot.engine.planning import UpgradeRequest
from bot.engine.report import build_report
from bot.engine.runner import SilentObserver
from tests.factories import make_plan, make_step
from tests.unit.memory_world import BACKUP, IMAGE, IN_PLACE, MemoryWorld, console_page, myst_world

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def _approved(world: MemoryWorld, plan=None) -> int:
    plan = plan or world.planner().build(UpgradeRequest(product="myst", version="3.9.1"))
    run = world.store.create(plan, requested_by="U1", at=NOW)
    world.store.transition(run.id, RunState.PLANNED, RunState.AWAITING_APPROVAL, at=NOW, actor="U1")
    world.store.transition(
        run.id, RunState.AWAITING_APPROVAL, RunState.APPROVED, at=NOW, actor="U2"
    )
    return run.id


def _run(world: MemoryWorld, plan=None):
    run = world.runner().execute(_approved(world, plan), actor="U2")
    return run, world.store.steps(run.id)


def _ran(world: MemoryWorld, script: str) -> bool:
    return any(script in command for command in world.shell.commands)


def test_a_clean_upgrade_succeeds_with_its_evidence():
    world = myst_world()
    run, steps = _run(world)
    assert run.state is RunState.SUCCEEDED
    assert [s.step_id for s in steps] == IN_PLACE
    assert all(s.status is StepStatus.SUCCEEDED for s in steps)
    report = build_report(run, steps)
    assert report.backup_path == BACKUP
    assert report.startup_log is not None
    assert "MyST Studio 3.9.1 started" in report.startup_log.text
    evidence = {c.result.description: c.result.evidence for c in report.verifications}
    assert evidence["the console shows the target version"] == "console_version is 3.9.1"
    assert evidence["no errors in the start-up log"].startswith("0 of 3 lines match")
    # the captured backup path reached the next command, quoted
    assert f"test -s {BACKUP} && ls -l {BACKUP}" in world.shell.commands
    states = [e.to_state for e in world.store.events(run.id)]
    assert states[-2:] == [RunState.RUNNING, RunState.SUCCEEDED]


def test_the_followed_log_is_ended_at_its_end_mark_not_after_its_time_limit():
    world = myst_world()
    _, steps = _run(world)
    log_step = next(s for s in steps if s.step_id == "startup-log")
    assert log_step.result is not None
    assert log_step.result.stopped_early
    assert world.shell.elapsed < 60  # the scripted log would run for hours if followed to its end


def test_every_step_is_committed_as_started_before_it_runs_and_final_before_the_next():
    world = myst_world()
    seen = []

    class Watcher(SilentObserver):
        def step_started(self, run, phase, planned):
            stored = {s.step_id: s.status for s in world.store.steps(run.id)}
            seen.append(stored)

    world.runner(Watcher()).execute(_approved(world), actor="U2")
    for index, stored in enumerate(seen):
        statuses = list(stored.values())
        assert statuses[-1] is StepStatus.STARTED  # this step, committed before it runs
        assert all(s is StepStatus.SUCCEEDED for s in statuses[:-1])
        assert len(statuses) == index + 1


def test_a_step_costs_one_write_its_end_going_with_the_next_write():
    world = myst_world()
    writes: list[tuple[str, list[StepStatus]]] = []

    class Counting(MemoryRunStore):
        def record_step(self, *results):
            writes.append(("steps", [r.status for r in results]))
            super().record_step(*results)

        def transition(self, run_id, expected, target, *, steps=(), **options):
            writes.append((target.value, [r.status for r in steps]))
            return super().transition(run_id, expected, target, steps=steps, **options)

    world.store = Counting()
    run_id = _approved(world)
    writes.clear()
    world.runner().execute(run_id, actor="U2")
    done, begun = StepStatus.SUCCEEDED, StepStatus.STARTED
    assert writes == [
        ("running", []),
        ("steps", [begun]),
        *[("steps", [done, begun])] * (len(IN_PLACE) - 1),
        ("succeeded", [done]),
    ]
    assert all(s.status is done for s in world.store.steps(run_id))


def _never_restarted(world: MemoryWorld) -> None:
    """The console keeps showing the running version: the run fails before the outage."""
    world.http.set_page("http://myst-prod.test/console/", console_page("3.9.0.3"))


def test_a_failing_backup_stops_the_run_before_anything_is_stopped():
    world = myst_world()
    _never_restarted(world)
    world.shell.on(r"/bin/backup-database\.sh", stderr="pg_dump: connection refused\n", exit_code=1)
    run, steps = _run(world)
    assert not _ran(world, "stop.sh")
    failed = next(s for s in steps if s.status is StepStatus.FAILED)
    assert failed.step_id == "backup"
    assert "exited with status 1" in failed.error
    # the pull pointed the local tag at 3.9.1: only that is undone, no database is restored
    assert run.state is RunState.ROLLED_BACK
    assert [s.step_id for s in steps if s.phase is Phase.ROLLBACK] == [
        "retag-previous",
        "rollback-console",
    ]


def test_a_backup_that_prints_no_path_counts_as_failed():
    world = myst_world()
    _never_restarted(world)
    world.shell.on(r"/bin/backup-database\.sh", stdout="done\n")
    run, steps = _run(world)
    assert run.state is RunState.ROLLED_BACK
    assert "did not show `backup_path`" in next(s for s in steps if s.step_id == "backup").error
    assert not _ran(world, "stop.sh")


def test_a_destructive_step_without_a_captured_backup_is_refused_at_run_time():
    world = myst_world()
    stop = make_step("stop", destructive=True)
    plan = make_plan(
        environment="prod",
        instance="myst-prod",
        steps=(PlannedStep(number=1, step=stop, preview="stop"),),
        rollback=(),
    )
    run, steps = _run(world, plan)
    assert run.state is RunState.FAILED
    assert "captured no backup" in steps[0].error
    assert world.shell.commands == []


def test_errors_in_the_startup_log_roll_back_to_the_previous_version():
    world = myst_world()
    world.shell.on(
        r"/bin/output-logs\.sh",
        exit_code=None,
        seconds=10_000,
        stdout=(
            "Starting MyST Studio 3.9.1\nERROR could not migrate table jobs\n"
            "MyST Studio 3.9.1 started with 1 error(s)\n"
        ),
    )
    world.shell.on(r"/bin/update-database\.sh", stdout="Restored\n")
    world.http.set_page("http://myst-prod.test/console/", console_page("3.9.1"))

    # the rollback reads the log again: the old version starts cleanly
    def rollback_log_after_restore():
        world.shell.on(
            r"/bin/output-logs\.sh",
            exit_code=None,
            seconds=10_000,
            stdout="Starting MyST Studio 3.9.0.3\nMyST Studio 3.9.0.3 started\n",
        )
        world.http.set_page("http://myst-prod.test/console/", console_page("3.9.0.3"))

    class SwitchBack(SilentObserver):
        def step_started(self, run, phase, planned):
            if planned.step.id == "restore-database":
                rollback_log_after_restore()

    run = world.runner(SwitchBack()).execute(_approved(world), actor="U2")
    steps = world.store.steps(run.id)
    assert run.state is RunState.ROLLED_BACK
    failed = next(s for s in steps if s.status is StepStatus.FAILED)
    assert failed.step_id == "startup-log"
    assert "1 of 3 lines match" in failed.error
    assert "could not migrate" in failed.error
    rollback = [s.step_id for s in steps if s.phase is Phase.ROLLBACK]
    assert rollback == [
        "retag-previous",
        "restore-database",
        "rollback-startup-log",
        "rollback-console",
    ]
    assert f"/opt/myst-studio/bin/update-database.sh {BACKUP}" in world.shell.commands
    tags = world.engine.images(IMAGE)
    old = next(i for i in tags if f"{IMAGE}:3.9.0.3" in i.tags)
    assert "myst-studio:latest" in old.tags  # the previous image is the one to run again


def test_a_wrong_version_on_the_console_fails_verification_and_rolls_back():
    world = myst_world()
    world.http.set_page("http://myst-prod.test/console/", console_page("3.9.0.3"))
    run, steps = _run(world)
    failed = next(s for s in steps if s.status is StepStatus.FAILED)
    assert failed.step_id == "console"
    assert "console_version is 3.9.0.3, expected 3.9.1" in failed.error
    assert run.state is RunState.ROLLED_BACK  # the old version is what shows after rollback


def test_a_console_that_never_answers_is_polled_until_the_step_times_out():
    world = myst_world()
    world.http.take_down("http://myst-prod.test/console/")
    run, steps = _run(world)
    console = next(s for s in steps if s.step_id == "console")
    assert "still so after 120s" in console.error
    assert len([u for u in world.http.requests if "console" in u]) > 10
    assert run.state is RunState.ROLLBACK_FAILED  # the rollback's console check cannot pass either
    assert build_report(run, steps).outcome.startswith("failed, and the rollback failed")


def test_a_step_past_its_timeout_fails_the_run():
    world = myst_world()
    _never_restarted(world)
    world.shell.on(r"/bin/pull\.sh", stdout="Pulling\n", seconds=10_000)
    run, steps = _run(world)
    assert run.state is RunState.ROLLED_BACK  # the pull may have moved the tag: it is put back
    assert "ran past its 900s timeout" in steps[0].error
    assert not _ran(world, "backup-database.sh")


def test_a_second_run_on_a_busy_instance_is_refused():
    world = myst_world()
    first = _approved(world)
    world.store.transition(first, RunState.APPROVED, RunState.RUNNING, at=NOW, actor="U2")
    with pytest.raises(InstanceBusy):
        world.runner().execute(_approved(world), actor="U2")


def test_a_followed_log_past_the_steps_own_timeout_fails_as_a_timeout():
    world = myst_world()
    plan = world.planner().build(UpgradeRequest(product="myst", version="3.9.1"))
    log_step = plan.step("startup-log")
    shorter = replace(log_step, step=replace(log_step.step, timeout=1.0))  # follow allows 5 min
    plan = replace(
        plan, steps=tuple(shorter if p is log_step else p for p in plan.steps), digest=""
    )
    world.shell.on(r"/bin/output-logs\.sh", stdout="starting\n", seconds=10_000)
    _, steps = _run(world, plan)
    failed = next(s for s in steps if s.status is StepStatus.FAILED)
    assert failed.step_id == "startup-log"
    assert "ran past its 1s timeout" in failed.error
    assert "exited with status" not in failed.error
