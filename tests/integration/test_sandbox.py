"""The sandbox MyST Studio upgraded by the real engine with the unchanged runbook: no Docker, no
network, no Slack, as `python -m bot demo` plays it. Then its scripts by hand, against the
behaviour of the Docker test host they mirror (tests/integration/test_myst_host.py)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tarfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.memory.store import MemoryRunStore
from adapters.sandbox import FileHttpCheck, SandboxConnector
from adapters.sql_store import SqlRunStore, upgrade_schema
from bot.config import load_config
from bot.domain.errors import HttpCheckFailed, VersionNotAvailable
from bot.domain.inventory import DockerEndpoint
from bot.domain.ports import RunStore
from bot.domain.run import Phase, Run, RunState, StepResult, StepStatus
from bot.engine.planning import Planner, UpgradeRequest
from bot.engine.report import build_report
from bot.engine.runner import Runner, RunObserver, SilentObserver
from bot.runbooks import BUNDLED, load_runbooks
from bot.sandbox import IMAGE, create_sandbox
from bot.wiring import build_ports

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
_VERSION = re.compile(r'<footer class="version">Version ([^<]*)</footer>')
CATALOG = load_runbooks(BUNDLED)
USER = "bob"  # the sandbox config's approver


class Sandbox:
    """A sandbox install, looked at from outside as an operator would."""

    def __init__(self, folder: Path, version: str = "3.9.0.3") -> None:
        self.config = create_sandbox(folder, version=version)
        self.home = folder.resolve() / "myst-studio"
        self.engine = SandboxConnector().connect(
            DockerEndpoint(
                url="sandbox" + (folder.resolve() / "engine").as_uri().removeprefix("file")
            )
        )

    def run(self, script: str, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [str(self.home / "bin" / script), *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)

    def database(self) -> str:
        return (self.home / "data" / "myst-studio.db").read_text()

    def console_version(self) -> str | None:
        page = FileHttpCheck().get((self.home / "console" / "index.html").as_uri(), timeout=1)
        match = _VERSION.search(page.body)
        return match.group(1) if match else None

    def running_version(self) -> str | None:
        """The versioned tag of the running container's image, as the runbook's detect reads it."""
        container = self.engine.container("myst-studio")
        if container.status != "running":
            return None
        return next(t.partition(":")[2] for t in container.image_tags if t.startswith(IMAGE))

    def fault(self, name: str, text: str = "") -> None:
        (self.home / "faults" / name).write_text(text)

    def clear_faults(self) -> None:
        for switch in (self.home / "faults").iterdir():
            switch.unlink()


def upgrade(
    sandbox: Sandbox, store: RunStore, version: str, observer: RunObserver | None = None
) -> tuple[Run, Sequence[StepResult]]:
    """Plan, approve and run an in-place upgrade of the sandbox, as the demo does."""
    inventory, ports = load_config(sandbox.config).inventory, build_ports()
    plan = Planner(CATALOG, inventory, ports).build(UpgradeRequest(product="myst", version=version))
    run = store.create(plan, requested_by=USER, at=NOW)
    for before, after in (
        (RunState.PLANNED, RunState.AWAITING_APPROVAL),
        (RunState.AWAITING_APPROVAL, RunState.APPROVED),
    ):
        store.transition(run.id, before, after, at=NOW, actor=USER)
    run = Runner(store, inventory, ports, observer).execute(run.id, actor=USER)
    return run, store.steps(run.id)


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path / "sandbox")


def test_the_runbook_upgrades_the_sandbox_in_place(
    sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    upgrade_schema(url)
    before = sandbox.database()

    started = time.perf_counter()
    run, steps = upgrade(sandbox, SqlRunStore(url), "3.9.1")
    took = time.perf_counter() - started
    with capsys.disabled():
        print(f"\n[sandbox] plan + in-place run 3.9.0.3 -> 3.9.1, {len(steps)} steps: {took:.2f}s")

    report = build_report(run, steps)
    assert run.state is RunState.SUCCEEDED, report.failed_step
    assert [s.step_id for s in steps] == [
        "pull", "backup", "check-backup", "stop", "start", "startup-log", "console"
    ]  # fmt: skip
    assert report.backup_path is not None
    backup = Path(report.backup_path)
    assert backup.parent == sandbox.home / "backup"
    assert backup.read_text() == before
    assert report.startup_log is not None
    assert "Migrating database schema from 3.9.0.3 to 3.9.1" in report.startup_log.text
    assert report.startup_log.text.rstrip().endswith("MyST Studio 3.9.1 started")
    evidence = {c.result.description: c.result.evidence for c in report.verifications}
    assert evidence["the console shows the target version"] == "console_version is 3.9.1"
    assert sandbox.console_version() == sandbox.running_version() == "3.9.1"
    assert sandbox.database().startswith("schema_version=3.9.1\n")


def test_errors_at_start_up_roll_back_to_the_old_version_and_data(sandbox: Sandbox) -> None:
    before = sandbox.database()
    sandbox.fault("startup-error", "could not migrate table jobs\n")

    class ClearFaultsBeforeRollback(SilentObserver):
        """The fault is in the new version's start; the old version then starts cleanly."""

        def state_changed(self, run: Run, reason: str) -> None:
            if run.state is RunState.ROLLING_BACK:
                sandbox.clear_faults()

    run, steps = upgrade(sandbox, MemoryRunStore(), "3.9.1", ClearFaultsBeforeRollback())

    assert run.state is RunState.ROLLED_BACK, build_report(run, steps).failed_step
    failed = next(s for s in steps if s.status is StepStatus.FAILED)
    assert failed.step_id == "startup-log"
    assert "could not migrate table jobs" in failed.error
    assert [s.step_id for s in steps if s.phase is Phase.ROLLBACK] == [
        "retag-previous", "restore-database", "rollback-startup-log", "rollback-console"
    ]  # fmt: skip
    assert sandbox.running_version() == sandbox.console_version() == "3.9.0.3"
    assert sandbox.database() == before


def test_a_failing_backup_stops_before_anything_is_stopped(sandbox: Sandbox) -> None:
    sandbox.fault("fail-backup-database", "disk full")
    run, steps = upgrade(sandbox, MemoryRunStore(), "3.9.1")
    assert run.state is RunState.ROLLED_BACK  # the pull's new tag is put back, nothing else
    assert [(s.phase.value, s.step_id) for s in steps] == [
        ("upgrade", "pull"),
        ("upgrade", "backup"),
        ("rollback", "retag-previous"),
        ("rollback", "rollback-console"),
    ]
    assert "disk full" in (steps[1].result.tail() if steps[1].result else "")
    assert list((sandbox.home / "backup").iterdir()) == []
    assert sandbox.running_version() == sandbox.console_version() == "3.9.0.3"


def test_a_version_the_sandbox_registry_lacks_is_refused(sandbox: Sandbox) -> None:
    with pytest.raises(VersionNotAvailable, match=r"3\.9\.0\.3, 3\.9\.1, 3\.10\.0"):
        upgrade(sandbox, MemoryRunStore(), "3.9.2")


def test_create_sandbox_is_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.perf_counter()
    Sandbox(tmp_path / "timed")
    with capsys.disabled():
        print(f"\n[sandbox] create_sandbox: {(time.perf_counter() - started) * 1000:.0f} ms")


# The scripts by hand.


def test_output_logs_follows_until_interrupted_or_its_container_stops(sandbox: Sandbox) -> None:
    def follow() -> tuple[subprocess.Popen[str], threading.Event]:
        argv = [str(sandbox.home / "bin" / "output-logs.sh")]
        follower = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)
        marker = threading.Event()

        def read() -> None:
            assert follower.stdout is not None
            for line in follower.stdout:
                if line.rstrip().endswith("MyST Studio 3.9.0.3 started"):
                    marker.set()

        threading.Thread(target=read, daemon=True).start()
        return follower, marker

    interrupted, marker = follow()
    assert marker.wait(10)
    time.sleep(1.5)  # past a poll of the container's state: it must still be following
    assert interrupted.poll() is None, "output-logs.sh ended by itself"
    os.killpg(interrupted.pid, signal.SIGINT)  # Ctrl+C, as the vendor's guide says
    assert interrupted.wait(10) == 130

    stopped, marker = follow()
    assert marker.wait(10)
    assert sandbox.run("stop.sh").returncode == 0
    assert stopped.wait(10) == 0  # like `docker logs --follow`: over when the container goes


def test_a_database_newer_than_the_image_is_refused(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path / "newer", version="3.10.0")
    assert sandbox.run("pull.sh", "3.9.0.3").returncode == 0  # without restoring a backup
    assert sandbox.run("restart.sh").returncode == 0

    log = sandbox.run("output-logs.sh").stdout  # a stopped container's log, whole
    assert " ERROR The database schema 3.10.0 is newer than MyST Studio 3.9.0.3:" in log
    assert log.rstrip().endswith("MyST Studio 3.9.0.3 failed to start")
    assert sandbox.running_version() is None
    with pytest.raises(HttpCheckFailed):
        sandbox.console_version()
    assert sandbox.database().startswith("schema_version=3.10.0\n")  # left untouched


def test_backups_never_overwrite_and_bad_requests_change_nothing(sandbox: Sandbox) -> None:
    first, second = (sandbox.run("backup-database.sh").stdout for _ in range(2))
    assert re.fullmatch(rf"Backed up to {sandbox.home}/backup/myst-studio-\d{{10}}\.sql\n", first)
    assert first != second  # the same second: the second waits for a fresh name

    missing = sandbox.run("pull.sh", "9.9.9")
    assert missing.returncode == 1
    assert "manifest unknown" in missing.stderr
    assert "pull.sh: could not pull registry.sandbox/myst-studio:9.9.9" in missing.stderr
    assert sandbox.run("upgrade.sh", "3.9.1; reboot").returncode == 2
    assert "no readable backup" in sandbox.run("update-database.sh", "/nope.sql").stderr
    assert sandbox.running_version() == "3.9.0.3"


def test_offline_import_from_a_tarball(sandbox: Sandbox, tmp_path: Path) -> None:
    tarball = tmp_path / "myst-studio-3.9.1.tar"
    (tmp_path / "tags").write_text(f"{IMAGE}:3.9.1\n")
    image = sandbox.config.parent / "registry" / "myst-studio" / "3.9.1"
    with tarfile.open(tarball, "w") as archive:
        for name in ("id", "version", "created"):
            archive.add(image / name, arcname=name)
        archive.add(tmp_path / "tags", arcname="tags")

    out = sandbox.run("import.sh", str(tarball))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == f"Tagged {IMAGE}:3.9.1 as myst-studio"
    assert sandbox.run("restart.sh").returncode == 0
    assert sandbox.console_version() == sandbox.running_version() == "3.9.1"
