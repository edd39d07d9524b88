"""MyST Studio upgraded in place over real SSH, Docker, registry and console, and the bad inputs."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.sql_store import SqlRunStore, upgrade_schema
from bot.domain.errors import (
    HostKeyRejected,
    HostUnreachable,
    InvalidVersion,
    UnknownProduct,
    VersionNotAvailable,
)
from bot.domain.run import Phase, RunState, StepStatus
from bot.engine.planning import Planner, UpgradeRequest
from bot.engine.report import build_report
from bot.engine.runner import Runner, SilentObserver
from bot.wiring import build_ports
from tests.hostkit.deployment import START_VERSION, Deployment, engine_service
from tests.hostkit.services import free_port

pytestmark = pytest.mark.services

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> SqlRunStore:
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    upgrade_schema(url)
    return SqlRunStore(url)


def _planner(deployment: Deployment) -> Planner:
    config = deployment.config()
    return Planner(config.catalog, config.inventory, build_ports())


def _approve_and_run(deployment: Deployment, store: SqlRunStore, plan, observer=None):  # type: ignore[no-untyped-def]
    run = store.create(plan, requested_by="U1", at=NOW)
    store.transition(run.id, RunState.PLANNED, RunState.AWAITING_APPROVAL, at=NOW, actor="U1")
    store.transition(run.id, RunState.AWAITING_APPROVAL, RunState.APPROVED, at=NOW, actor="U2")
    runner = Runner(store, deployment.config().inventory, build_ports(), observer)
    run = runner.execute(run.id, actor="U2")
    return run, store.steps(run.id)


def test_in_place_upgrade_from_3_9_0_3_to_3_9_1(myst_deployment: Deployment, store):
    host = myst_deployment.host
    before = host.database()
    plan = _planner(myst_deployment).build(UpgradeRequest(product="myst", version="3.9.1"))
    assert (plan.from_version, plan.to_version) == (START_VERSION, "3.9.1")

    run, steps = _approve_and_run(myst_deployment, store, plan)
    report = build_report(run, steps)

    assert run.state is RunState.SUCCEEDED, report.failed_step
    assert all(s.status is StepStatus.SUCCEEDED for s in steps)
    # the backup path reported exists on the host and holds the database as it was
    assert report.backup_path is not None
    backup = Path(report.backup_path)
    assert backup in host.backups()
    assert backup.read_text() == before
    # a bounded excerpt of the start-up log, ending at the start-up's end line
    assert report.startup_log is not None
    assert "Migrating database schema from 3.9.0.3 to 3.9.1" in report.startup_log.text
    assert report.startup_log.text.rstrip().endswith("MyST Studio 3.9.1 started")
    # verification evidence: what the console showed, and the error count
    evidence = {c.result.description: c.result for c in report.verifications}
    assert evidence["the console shows the target version"].evidence == "console_version is 3.9.1"
    assert evidence["no errors in the start-up log"].passed
    # and it is really so on the host
    assert host.running_version() == "3.9.1"
    assert host.console_version() == "3.9.1"
    assert "schema_version=3.9.1" in host.database()


def test_a_failing_backup_stops_before_anything_is_stopped(myst_deployment: Deployment, store):
    host = myst_deployment.host
    host.fail_script("backup-database", "disk full")
    plan = _planner(myst_deployment).build(UpgradeRequest(product="myst", version="3.9.1"))
    run, steps = _approve_and_run(myst_deployment, store, plan)
    upgrade = [s for s in steps if s.phase is Phase.UPGRADE]
    assert [s.step_id for s in upgrade] == ["pull", "backup"]
    assert "disk full" in (upgrade[-1].result.tail() if upgrade[-1].result else "")
    # the pull had pointed the local tag at 3.9.1: that alone is undone, and checked
    assert run.state is RunState.ROLLED_BACK
    assert [s.step_id for s in steps if s.phase is Phase.ROLLBACK] == [
        "retag-previous",
        "rollback-console",
    ]
    assert host.running_version() == START_VERSION  # never stopped, still serving
    assert host.console_version() == START_VERSION


def test_errors_at_start_up_roll_back_to_the_old_version_and_data(
    myst_deployment: Deployment, store
):
    host = myst_deployment.host
    before = host.database()
    host.startup_errors("ERROR could not migrate table jobs")
    plan = _planner(myst_deployment).build(UpgradeRequest(product="myst", version="3.9.1"))

    class ClearFaultsBeforeRollback(SilentObserver):
        """The fault is in the new version's start; the old version then starts cleanly."""

        def state_changed(self, run, reason):  # type: ignore[no-untyped-def]
            if run.state is RunState.ROLLING_BACK:
                host.clear_faults()

    run, steps = _approve_and_run(myst_deployment, store, plan, ClearFaultsBeforeRollback())
    assert run.state is RunState.ROLLED_BACK, build_report(run, steps).failed_step
    failed = next(s for s in steps if s.status is StepStatus.FAILED)
    assert failed.step_id == "startup-log"
    assert "could not migrate table jobs" in failed.error
    assert [s.step_id for s in steps if s.phase is Phase.ROLLBACK] == [
        "retag-previous",
        "restore-database",
        "rollback-startup-log",
        "rollback-console",
    ]
    assert host.running_version() == START_VERSION
    assert host.console_version() == START_VERSION
    assert host.database() == before


def test_a_version_with_shell_code_never_reaches_a_shell_unquoted(
    myst_deployment: Deployment, store
):
    host = myst_deployment.host
    canary = host.home / "pwned"
    evil = f"3.9.1; touch {canary}"
    with pytest.raises(InvalidVersion):
        _planner(myst_deployment).build(UpgradeRequest(product="myst", version=evil))
    # even if such a value got into a plan, it would arrive as one quoted word
    plan = _planner(myst_deployment).build(UpgradeRequest(product="myst", version="3.9.1"))
    forged = replace(plan, variables={**plan.variables, "version": evil}, digest="")
    run, steps = _approve_and_run(myst_deployment, store, forged)
    assert run.state is RunState.ROLLED_BACK  # pull.sh refused the odd version; the tag is put back
    assert (steps[0].step_id, steps[0].status) == ("pull", StepStatus.FAILED)
    assert not canary.exists()
    assert host.running_version() == START_VERSION


def test_unknown_product(myst_deployment: Deployment):
    with pytest.raises(UnknownProduct, match="myst-studio"):
        _planner(myst_deployment).build(UpgradeRequest(product="mysql", version="8.0.1"))


def test_version_not_in_the_registry(myst_deployment: Deployment):
    with pytest.raises(VersionNotAvailable) as caught:
        _planner(myst_deployment).build(UpgradeRequest(product="myst", version="3.9.2"))
    assert "3.9.0.3, 3.9.1, 3.10.0" in str(caught.value)


def test_unreachable_host(myst_deployment: Deployment):
    myst_deployment.write_config(ssh_port=free_port())  # nothing listens there
    with pytest.raises(HostUnreachable, match=r"127\.0\.0\.1"):
        _planner(myst_deployment).build(UpgradeRequest(product="myst", version="3.9.1"))


def test_unknown_host_key(myst_deployment: Deployment):
    myst_deployment.write_config(known_hosts=myst_deployment.ssh.known_hosts_with_wrong_key())
    with pytest.raises(HostKeyRejected, match="SHA256:"):
        _planner(myst_deployment).build(UpgradeRequest(product="myst", version="3.9.1"))
    assert myst_deployment.host.running_version() == START_VERSION


def test_rollback_on_request_restores_the_old_version_and_data(myst_deployment: Deployment):
    from bot.domain.approval import Decision

    host = myst_deployment.host
    before = host.database()
    service = engine_service(myst_deployment.config())

    def approve_and_run(approval):  # type: ignore[no-untyped-def]
        service.vote(
            approval.run.id, user="U0BOB0001", decision=Decision.APPROVE, digest=None, via="test"
        )
        return service.execute(approval.run.id)

    upgrade = approve_and_run(
        service.request(UpgradeRequest(product="myst", version="3.9.1"), requester="U0ALICE01")
    )
    assert upgrade.state is RunState.SUCCEEDED
    assert host.running_version() == "3.9.1"
    rollback = approve_and_run(service.request_rollback(upgrade.id, requester="U0ALICE01"))
    assert rollback.state is RunState.SUCCEEDED
    assert host.running_version() == START_VERSION
    assert host.console_version() == START_VERSION
    assert host.database() == before
