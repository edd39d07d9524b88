"""MyST Studio's phased and offline strategies over real SSH, SFTP, Docker and registry."""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from pathlib import Path

import docker
import pytest

from bot.domain.approval import Decision
from bot.domain.errors import VersionNotAvailable
from bot.domain.run import Phase, RunState, StepStatus
from bot.engine.planning import UpgradeRequest
from bot.engine.report import build_report
from bot.engine.runner import SilentObserver
from bot.engine.service import UpgradeService
from tests.hostkit.deployment import START_VERSION, Deployment, engine_service
from tests.hostkit.myst import MystHost

pytestmark = pytest.mark.services

BOB = "U0BOB0001"


def _approved(service: UpgradeService, **request: object) -> int:
    approval = service.request(
        UpgradeRequest(product="myst", version="3.9.1", **request), requester="U0ALICE01"
    )
    outcome = service.vote(
        approval.run.id, user=BOB, decision=Decision.APPROVE, digest=None, via="test"
    )
    assert outcome.now_approved
    return approval.run.id


@pytest.fixture
def phased(myst_deployment: Deployment, myst_host_factory: Callable[..., MystHost]) -> Deployment:
    nonprod = myst_host_factory()
    nonprod.install(START_VERSION)
    myst_deployment.add_peer("nonprod", "nonprod/myst-test", nonprod)
    return myst_deployment


def _nonprod(deployment: Deployment) -> MystHost:
    host = deployment.peers["nonprod"][1]
    assert isinstance(host, MystHost)
    return host


def test_phased_on_production_data_stops_at_the_gate_then_upgrades_production(phased):
    prod, nonprod = phased.host, _nonprod(phased)
    prod.write_database(prod.database() + "customer=only-in-production\n")
    service = engine_service(phased.config())
    run_id = _approved(service, strategy="phased", options={"prod_data": "yes"})

    run = service.execute(run_id)
    assert run.state is RunState.WAITING, build_report(run, service.store.steps(run_id)).failed_step
    assert nonprod.running_version() == "3.9.1"
    assert "customer=only-in-production" in nonprod.database()  # tested on production's data
    assert prod.running_version() == START_VERSION  # production untouched before the gate
    gate = service.approval(run)
    assert gate.gate is not None
    assert gate.gate.step.id == "go-to-production"

    outcome = service.vote(
        run_id, user=BOB, decision=Decision.APPROVE, digest=gate.digest, via="test"
    )
    assert outcome.now_approved
    run = service.resume(run_id)
    assert run.state is RunState.SUCCEEDED, build_report(run, service.store.steps(run_id))
    assert prod.running_version() == "3.9.1"
    assert prod.console_version() == "3.9.1"


def test_a_rejected_gate_rolls_non_production_back(phased):
    nonprod = _nonprod(phased)
    before = nonprod.database()
    service = engine_service(phased.config())
    run_id = _approved(service, strategy="phased")
    run = service.execute(run_id)
    assert run.state is RunState.WAITING
    service.vote(run_id, user=BOB, decision=Decision.REJECT, digest=None, via="test")
    run = service.reject_gate(run_id)
    assert run.state is RunState.ROLLED_BACK
    assert nonprod.running_version() == START_VERSION
    assert nonprod.database() == before
    assert phased.host.running_version() == START_VERSION


def test_a_production_failure_rolls_back_production_only(phased):
    prod, nonprod = phased.host, _nonprod(phased)
    before = prod.database()
    service = engine_service(phased.config())
    run_id = _approved(service, strategy="phased")
    service.execute(run_id)
    gate = service.approval(service.run(run_id))
    service.vote(run_id, user=BOB, decision=Decision.APPROVE, digest=gate.digest, via="test")

    class BreakProductionStart(SilentObserver):
        def step_started(self, run, phase, planned):  # type: ignore[no-untyped-def]
            if planned.step.id == "start":
                prod.startup_errors("ERROR index corrupt")
            if planned.step.id == "restore-database":
                prod.clear_faults()

    run = service.resume(run_id, BreakProductionStart())
    assert run.state is RunState.ROLLED_BACK
    steps = service.store.steps(run_id)
    assert {s.step_id for s in steps if s.phase is Phase.ROLLBACK} == {
        "retag-previous",
        "restore-database",
        "rollback-startup-log",
        "rollback-console",
    }
    assert prod.running_version() == START_VERSION
    assert prod.database() == before
    assert nonprod.running_version() == "3.9.1"  # verified non-production stays upgraded


@pytest.fixture
def archive_dir(services, myst_images: str, tmp_path: Path) -> Path:
    """`docker save` of the 3.9.1 image, where the offline strategy looks for archives."""
    client = docker.DockerClient(base_url=services.docker_host)
    image = client.images.pull(myst_images, tag="3.9.1")
    folder = tmp_path / "archives"
    folder.mkdir()
    with (folder / "myst-studio-3.9.1.tar").open("wb") as out:
        for chunk in image.save(named=True):
            out.write(chunk)
    client.close()
    return folder


def test_offline_uploads_the_archive_and_imports_it(myst_deployment: Deployment, archive_dir):
    myst_deployment.main_vars["archive_dir"] = str(archive_dir)
    myst_deployment.write_config()
    service = engine_service(myst_deployment.config())
    run_id = _approved(service, strategy="offline")
    transfers: list[tuple[int, int | None]] = []

    class Watch(SilentObserver):
        def transfer(self, run, planned, done, total):  # type: ignore[no-untyped-def]
            transfers.append((done, total))

    run = service.execute(run_id, Watch())
    report = build_report(run, service.store.steps(run_id))
    assert run.state is RunState.SUCCEEDED, report.failed_step
    size = (archive_dir / "myst-studio-3.9.1.tar").stat().st_size
    assert transfers[-1] == (size, size)
    assert [d for d, _ in transfers] == sorted(d for d, _ in transfers)
    uploaded = myst_deployment.host.home / "import" / "myst-studio-3.9.1.tar"
    assert uploaded.stat().st_size == size
    with tarfile.open(uploaded) as archive:
        assert "manifest.json" in archive.getnames()
    assert myst_deployment.host.running_version() == "3.9.1"
    upload = next(s for s in service.store.steps(run_id) if s.step_id == "upload")
    assert upload.status is StepStatus.SUCCEEDED
    assert str(uploaded) in upload.captures["archive_path"]


def test_offline_refuses_a_version_without_an_archive(myst_deployment: Deployment, archive_dir):
    myst_deployment.main_vars["archive_dir"] = str(archive_dir)
    myst_deployment.write_config()
    with pytest.raises(VersionNotAvailable, match=r"newest last\): 3\.9\.1"):
        engine_service(myst_deployment.config()).plan(
            UpgradeRequest(product="myst", version="3.10.0", strategy="offline")
        )


@pytest.fixture
def blue_green(myst_deployment: Deployment, myst_host_factory, proxy_factory):  # type: ignore[no-untyped-def]
    """Blue (the instance) serving 3.9.0.3 through a real nginx; green idle at 3.9.0.3."""
    green = myst_host_factory()
    green.install(START_VERSION)
    proxy = proxy_factory(myst_deployment.host, green)
    myst_deployment.add_peer("green", "prod/myst-green", green)
    myst_deployment.add_peer(
        "proxy", "prod/proxy", {"home": str(proxy.home), "console_url": proxy.url}
    )
    return myst_deployment, green, proxy


def test_zero_downtime_switches_traffic_without_a_failed_request(blue_green):
    deployment, green, proxy = blue_green
    service = engine_service(deployment.config())
    run_id = _approved(service, strategy="zero-downtime")
    poller = proxy.poller(interval=0.02)
    run = service.execute(run_id)
    report = poller.stop()
    assert run.state is RunState.SUCCEEDED, build_report(run, service.store.steps(run_id))
    assert not report.failures
    assert report.requests >= 20  # polled all along: the whole run takes about a second
    assert report.versions_seen[0] == START_VERSION
    assert report.versions_seen[-1] == "3.9.1"
    assert proxy.active() == "green"
    assert deployment.host.running_version() == START_VERSION  # blue was never touched
    assert green.running_version() == "3.9.1"
    blue_rows = {r for r in deployment.host.database().splitlines() if "schema" not in r}
    assert blue_rows <= set(green.database().splitlines())  # green carries blue's state


def test_zero_downtime_switches_back_when_the_check_through_the_proxy_fails(blue_green):
    deployment, green, proxy = blue_green
    service = engine_service(deployment.config())
    run_id = _approved(service, strategy="zero-downtime")

    class WrongVersionAfterSwitch(SilentObserver):
        def step_finished(self, run, result):  # type: ignore[no-untyped-def]
            if result.step_id == "switch-to-green":
                green.console_shows("3.9.9")

    poller = proxy.poller(interval=0.02)
    run = service.execute(run_id, WrongVersionAfterSwitch())
    report = poller.stop()
    assert run.state is RunState.ROLLED_BACK
    assert not report.failures
    assert report.versions_seen[-1] == START_VERSION
    assert proxy.active() == "blue"
    rolled = [s.step_id for s in service.store.steps(run_id) if s.phase is Phase.ROLLBACK]
    assert rolled == ["switch-back-to-blue", "check-blue-through-proxy"]


def test_zero_downtime_leaves_traffic_on_blue_when_green_fails(blue_green):
    deployment, green, proxy = blue_green
    green.startup_errors("ERROR cannot open repository")
    service = engine_service(deployment.config())
    run_id = _approved(service, strategy="zero-downtime")
    poller = proxy.poller(interval=0.02)
    run = service.execute(run_id)
    report = poller.stop()
    assert run.state is RunState.FAILED
    assert not report.failures
    assert set(report.versions_seen) == {START_VERSION}
    assert proxy.active() == "blue"
    assert not [s for s in service.store.steps(run_id) if s.phase is Phase.ROLLBACK]


def test_a_fleet_upgrades_the_canary_then_batches(myst_deployment: Deployment, myst_host_factory):  # type: ignore[no-untyped-def]
    for name in ("myst-prod-2", "myst-prod-3"):
        host = myst_host_factory()
        host.install(START_VERSION)
        myst_deployment.fleet[name] = host
    myst_deployment.batch_size = 2
    myst_deployment.write_config()
    service = engine_service(myst_deployment.config())
    run_id = _approved(service)  # no instance= : the whole environment
    run = service.execute(run_id)
    assert run.state is RunState.SUCCEEDED, service.store.events(run_id)[-1].reason
    assert next(s.step_id for s in service.store.steps(run_id)) == "myst-prod"  # the canary
    for host in (myst_deployment.host, *myst_deployment.fleet.values()):
        assert host.running_version() == "3.9.1"
