"""The simulated MyST Studio host behaves like the vendor's: the scripts of the upgrade guide, run
by hand as the host account, upgrade, back up, roll back and show their logs, and the fault
switches make them fail the way a real host can."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import docker
import pytest
import requests

from adapters.docker_engine import DockerConnector
from bot.domain.inventory import DockerEndpoint
from tests.hostkit.services import Services

if TYPE_CHECKING:
    from tests.hostkit.myst import MystHost


BACKED_UP = re.compile(r"^Backed up to (\S+)$", re.M)


def _backup_path(done: subprocess.CompletedProcess[str]) -> Path:
    match = BACKED_UP.search(done.stdout)
    assert match, done.stdout + done.stderr
    return Path(match.group(1))


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_in_place_upgrade_by_hand_migrates_and_keeps_a_backup(myst_host: MystHost) -> None:
    before = myst_host.database()

    upgrade = myst_host.run("upgrade.sh", "3.9.1")
    _ok(upgrade)
    log = myst_host.wait_started()

    backup = _backup_path(upgrade)
    assert backup.parent == myst_host.home / "backup"
    assert re.fullmatch(r"myst-studio-\d{10}\.sql", backup.name)
    assert backup.read_text() == before
    assert "Migrating database schema from 3.9.0.3 to 3.9.1" in log
    assert " ERROR " not in log
    assert log.rstrip().endswith("MyST Studio 3.9.1 started")
    assert myst_host.console_version() == "3.9.1"
    assert myst_host.running_version() == "3.9.1"
    database = myst_host.database()
    assert database.startswith("schema_version=3.9.1\n")
    assert "project=payments-platform" in database
    # The container ran as the host account: what it wrote in the home stays the account's.
    db_file = myst_host.home / "data" / "myst-studio.db"
    assert db_file.stat().st_uid == myst_host.user.pw_uid
    assert backup.stat().st_uid == myst_host.user.pw_uid


def test_rollback_by_hand_restores_the_old_version_and_data(
    myst_host: MystHost, services: Services
) -> None:
    before = myst_host.database()
    backup = _backup_path(myst_host.run("upgrade.sh", "3.9.1"))
    myst_host.wait_started()
    listing = _ok(myst_host.as_host_user(["docker", "images"]))
    assert myst_host.image_repository in listing

    old = f"{myst_host.image_repository}:3.9.0.3"
    _ok(myst_host.as_host_user(["docker", "tag", old, myst_host.local_image]))
    engine = DockerConnector().connect(DockerEndpoint(url=services.docker_host))
    try:
        # After the re-tag the running 3.9.1 is only reachable through its versioned tag.
        running = engine.container(myst_host.container)
        assert f"{myst_host.image_repository}:3.9.1" in running.image_tags
        assert f"{myst_host.local_image}:latest" not in running.image_tags
    finally:
        engine.close()

    out = _ok(myst_host.run("update-database.sh", str(backup)))
    log = myst_host.wait_started()

    assert f"Loaded {backup} into the database" in out
    assert "Database schema is up to date (3.9.0.3)" in log
    assert " ERROR " not in log
    assert myst_host.database() == before
    assert myst_host.console_version() == "3.9.0.3"
    assert myst_host.running_version() == "3.9.0.3"


def test_output_logs_follows_the_start_up_until_killed(myst_host: MystHost) -> None:
    follower = subprocess.Popen(
        myst_host.host_user_argv([str(myst_host.script("output-logs.sh"))]),
        stdout=subprocess.PIPE,
        text=True,
        env=myst_host.host_env(),
        start_new_session=True,
    )
    lines: list[str] = []
    marker = threading.Event()

    def read() -> None:
        assert follower.stdout is not None
        for line in follower.stdout:
            lines.append(line)
            if "MyST Studio 3.9.0.3 started" in line:
                marker.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert marker.wait(10), "".join(lines)
        time.sleep(0.5)
        assert follower.poll() is None, "output-logs.sh ended by itself"
    finally:
        os.killpg(follower.pid, signal.SIGINT)  # Ctrl+C, as the vendor's guide says
    follower.wait(10)  # raises if it outlives being told to end
    assert any("Starting MyST Studio 3.9.0.3" in line for line in lines)


def test_fail_switch_makes_the_chosen_script_fail(myst_host: MystHost) -> None:
    myst_host.fail_script("backup-database.sh", "pg_dump: could not connect to the database")

    alone = myst_host.run("backup-database.sh")
    upgrade = myst_host.run("upgrade.sh", "3.9.1")

    assert alone.returncode == 1
    assert alone.stderr == "backup-database.sh: pg_dump: could not connect to the database\n"
    assert upgrade.returncode == 1  # stops at the backup: the instance was never stopped
    assert "Backed up to" not in upgrade.stdout
    assert myst_host.backups() == []
    assert myst_host.running_version() == "3.9.0.3"

    myst_host.fail_script("pull.sh")
    pull = myst_host.run("pull.sh", "3.9.1")
    assert pull.returncode == 1
    assert "fault switch" in pull.stderr

    myst_host.clear_faults()
    assert _backup_path(myst_host.run("backup-database.sh")).exists()


def test_startup_error_switch_puts_errors_in_the_start_up_log(myst_host: MystHost) -> None:
    myst_host.startup_errors("Could not connect to the repository", "Scheduler failed")

    _ok(myst_host.run("restart.sh"))
    log = myst_host.wait_started()

    assert re.search(r" ERROR Could not connect to the repository$", log, re.M)
    assert re.search(r" ERROR Scheduler failed$", log, re.M)
    assert log.rstrip().endswith("MyST Studio 3.9.0.3 started with 2 error(s)")
    assert myst_host.console_version() == "3.9.0.3"


def test_console_version_switch_shows_a_wrong_version(myst_host: MystHost) -> None:
    myst_host.console_shows("3.8.0")
    assert myst_host.console_version() == "3.8.0"
    assert myst_host.running_version() == "3.9.0.3"
    myst_host.clear_faults()
    assert myst_host.console_version() == "3.9.0.3"


def test_a_database_newer_than_the_image_is_refused(
    myst_host_factory: Callable[..., MystHost],
) -> None:
    host = myst_host_factory()
    host.install("3.10.0")
    old = f"{host.image_repository}:3.9.0.3"
    _ok(host.as_host_user(["docker", "tag", old, host.local_image]))

    _ok(host.run("restart.sh"))  # without restoring the old backup first
    with pytest.raises(RuntimeError, match="failed to start"):
        host.wait_started()

    log = host.logs()
    assert re.search(
        r" ERROR The database schema 3\.10\.0 is newer than MyST Studio 3\.9\.0\.3", log
    )
    assert "MyST Studio 3.9.0.3 started" not in log
    assert host.running_version() is None
    with pytest.raises(requests.ConnectionError):
        host.console(timeout=2)
    assert host.database().startswith("schema_version=3.10.0\n")  # left untouched


def test_backups_taken_in_the_same_second_never_overwrite(myst_host: MystHost) -> None:
    first = _backup_path(myst_host.run("backup-database.sh"))
    myst_host.write_database(myst_host.database() + "project=added-later\n")
    second = _backup_path(myst_host.run("backup-database.sh"))

    assert first != second
    assert "added-later" not in first.read_text()
    assert "added-later" in second.read_text()
    assert myst_host.backups() == [first, second]


def test_start_and_stop_say_when_there_is_nothing_to_do(myst_host: MystHost) -> None:
    assert "already running" in _ok(myst_host.run("start.sh"))
    assert "MyST Studio stopped" in _ok(myst_host.run("stop.sh"))
    assert "not running" in _ok(myst_host.run("stop.sh"))
    assert myst_host.running_version() is None
    logs = myst_host.run("output-logs.sh")
    assert logs.returncode == 1
    assert "not running" in logs.stderr


def test_bad_requests_fail_with_a_message_and_change_nothing(myst_host: MystHost) -> None:
    missing = myst_host.run("pull.sh", "9.9.9")
    assert missing.returncode == 1
    assert "could not pull" in missing.stderr
    bad = myst_host.run("upgrade.sh", "3.9.1; reboot")
    assert bad.returncode == 2
    assert "usage: upgrade.sh <VERSION>" in bad.stderr
    nothing = myst_host.run("update-database.sh", str(myst_host.home / "backup" / "nope.sql"))
    assert nothing.returncode == 1
    assert "no readable backup" in nothing.stderr
    assert myst_host.running_version() == "3.9.0.3"  # nothing was stopped

    env = myst_host.home / "etc" / "myst.env"
    env.write_text(env.read_text() + "MYST_COLOUR=blue\n")
    assert "unknown setting 'MYST_COLOUR'" in myst_host.run("start.sh").stderr


def test_offline_import_from_a_tarball(myst_host: MystHost, services: Services) -> None:
    tarball = myst_host.home / "myst-studio-3.9.1.tar"
    client = docker.DockerClient(base_url=services.docker_host, version="auto")
    try:
        image = client.images.get(f"{myst_host.image_repository}:3.9.1")
        with tarball.open("wb") as archive:
            for chunk in image.save(named=True):
                archive.write(chunk)
    finally:
        client.close()

    out = _ok(myst_host.run("import.sh", str(tarball)))
    _ok(myst_host.run("restart.sh"))
    log = myst_host.wait_started()

    assert f"as {myst_host.local_image}" in out
    assert "Migrating database schema from 3.9.0.3 to 3.9.1" in log
    assert myst_host.console_version() == "3.9.1"


def test_hosts_share_one_engine_without_colliding(
    myst_host_factory: Callable[..., MystHost],
) -> None:
    old, new = myst_host_factory(), myst_host_factory()
    old.install("3.9.0.3")
    new.install("3.10.0")
    assert (old.console_version(), new.console_version()) == ("3.9.0.3", "3.10.0")
    assert old.container != new.container
    assert old.local_image != new.local_image
