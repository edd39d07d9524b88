"""The command line as an operator runs it: `python -m bot check|plan|db upgrade`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hostkit.deployment import START_VERSION, Deployment

ROOT = Path(__file__).resolve().parents[2]


def bot(*args: str, config: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("BOT_CONFIG", "DATABASE_URL")}
    if config is not None:
        environ["BOT_CONFIG"] = str(config)
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environ,
        timeout=120,
    )


def test_without_a_config_the_cli_says_how_to_give_one():
    done = bot("check")
    assert done.returncode == 2
    assert done.stderr.startswith("error: The bot has no config file. Set BOT_CONFIG")
    assert "--config PATH" in done.stderr


def test_check_names_file_line_and_fix(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(
        "environments:\n  prod:\n    instances:\n      - name: a\n"
        "        product: myst\n        locl: true\n"
    )
    done = bot("check", config=config)
    assert done.returncode == 2
    assert f"{config}:6: environments.prod.instances[0].locl: is not a known setting" in done.stderr
    assert "Did you mean `local`?" in done.stderr


@pytest.mark.services
def test_check_validates_the_config(myst_deployment: Deployment):
    done = bot("check", config=myst_deployment.config_file)
    assert done.returncode == 0, done.stderr
    assert "1 instance(s), 2 runbook(s): valid." in done.stdout


@pytest.mark.services
def test_check_connect_reaches_every_instance(myst_deployment: Deployment):
    done = bot("check", "--connect", config=myst_deployment.config_file)
    assert done.returncode == 0, done.stdout + done.stderr
    for check in ("shell", "docker", "registry", "version", "console"):
        assert f"OK   prod/myst-prod {check}" in done.stdout
    assert f"runs {START_VERSION}" in done.stdout


@pytest.mark.services
def test_check_connect_says_what_fails(myst_deployment: Deployment):
    myst_deployment.write_config(known_hosts=myst_deployment.ssh.known_hosts_with_wrong_key())
    done = bot("check", "--connect", config=myst_deployment.config_file)
    assert done.returncode == 1
    assert "FAIL prod/myst-prod shell" in done.stdout
    assert "SHA256:" in done.stdout
    assert "OK   prod/myst-prod docker" in done.stdout  # the rest is still checked


@pytest.mark.services
def test_plan_prints_the_plan_and_runs_nothing(myst_deployment: Deployment):
    host = myst_deployment.host
    done = bot("plan", "myst", "3.9.1", "--env", "prod", config=myst_deployment.config_file)
    assert done.returncode == 0, done.stderr
    assert f"from {START_VERSION} to 3.9.1" in done.stdout
    assert f"{host.home}/bin/pull.sh 3.9.1" in done.stdout
    assert "Nothing was run" in done.stdout
    assert host.backups() == []
    assert host.running_version() == START_VERSION


@pytest.mark.services
def test_plan_refuses_a_malformed_version_in_one_sentence(myst_deployment: Deployment):
    done = bot("plan", "myst", "3.9.1; rm -rf /", config=myst_deployment.config_file)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: `3.9.1; rm -rf /` is not a version. "
        "Write it as numbers separated by dots, such as 3.9.1."
    )


@pytest.mark.services
def test_db_upgrade_creates_the_schema(fresh_url: str):
    done = bot("db", "upgrade", DATABASE_URL=fresh_url)
    assert done.returncode == 0, done.stderr
    assert "The database is at revision 0005." in done.stdout
    again = bot("db", "upgrade", DATABASE_URL=fresh_url)
    assert again.returncode == 0
