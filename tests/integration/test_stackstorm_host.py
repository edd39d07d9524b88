"""The simulated StackStorm hosts behave like real ones: run as the host account (by absolute
path, as the bot's SSH session runs them), the shims print StackStorm's and the package tools'
formats and leave the state a test checks: versions, services, journal, datastore, packs."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from adapters.ssh import ParamikoConnector

if TYPE_CHECKING:
    from tests.hostkit.sshd import SshServer
    from tests.hostkit.stackstorm import St2Host

pytestmark = pytest.mark.services

Factory = Callable[..., "St2Host"]
Repos = Callable[..., str]
V3 = ["st2actionrunner", "st2api", "st2stream", "st2auth", "st2garbagecollector"]
V3 += ["st2notifier", "st2rulesengine", "st2sensorcontainer", "st2chatops", "st2timersengine"]
V3 += ["st2workflowengine", "st2scheduler"]
UPGRADE = ("install", "-y", "--only-upgrade")


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def last(done: subprocess.CompletedProcess[str]) -> tuple[int, str]:
    return done.returncode, (done.stdout.splitlines() or [""])[-1]


def st2(host: St2Host, *argv: str) -> subprocess.CompletedProcess[str]:
    return host.run(str(host.bin / "st2"), *argv)


def ctl(host: St2Host, *argv: str) -> subprocess.CompletedProcess[str]:
    return host.run_sudo(str(host.bin / "st2ctl"), *argv)


def apt(host: St2Host, *argv: str) -> subprocess.CompletedProcess[str]:
    return host.run_sudo("apt-get", *argv)


def pins(version: str, *packages: str) -> list[str]:
    return [f"{package}={version}-1" for package in packages]


def status(host: St2Host) -> dict[str, int | None]:
    out = ok(host.run(str(host.bin / "st2ctl"), "status"))
    assert out.startswith("##### st2 components status #####\n")
    found = re.findall(r"^(\S+) (?:PID: (\d+)|is not running\.)$", out, re.M)
    assert len(found) == out.count("\n") - 1, out
    return {name: int(pid) if pid else None for name, pid in found}


def pgrep(host: St2Host) -> list[int]:
    found = host.run("pgrep", "-f", f"{host.root}/opt/stackstor[m]/")  # [m]: not its own line
    return sorted(map(int, found.stdout.split()))


def test_version_status_stop_and_a_hung_actionrunner(st2_host_factory: Factory) -> None:
    host = st2_host_factory(version="3.8.1")
    assert ok(st2(host, "--version")) == "st2 3.8.1, on Python 3.8.10\n"
    services = status(host)
    assert list(services) == V3
    assert pgrep(host) == sorted(host.running().values()) == sorted(map(int, services.values()))
    old = st2_host_factory(version="2.10.0")  # Python 2's argparse printed versions on stderr
    assert st2(old, "--version").stderr == "st2 2.10.0, on Python 2.7.12\n"
    services = status(old)
    assert list(services)[6] == "st2resultstracker"
    assert list(services)[-2:] == ["mistral-server", "mistral.api"]
    assert all(services.values())
    # stop needs root; then the key commands meet no st2api
    refused = host.run(str(host.bin / "st2ctl"), "stop")
    assert last(refused) == (1, "Please run this command with root privileges")
    assert ok(ctl(host, "stop")) == ""
    assert set(status(host).values()) == {None}
    assert host.processes() == []
    listing = st2(host, "key", "list", "-j")
    assert listing.returncode == 1
    assert listing.stdout.startswith("ERROR: HTTPConnectionPool(host='127.0.0.1', port=9101)")
    assert "[Errno 111] Connection refused" in listing.stdout
    assert ok(ctl(host, "start")).splitlines()[1].startswith("st2actionrunner PID: ")
    assert all(status(host).values())
    assert host.journal() == ["st2ctl start", "st2ctl stop", "st2ctl start"]
    # a hung actionrunner outlives the stop until `kill -9`
    host.leave_running("st2actionrunner")
    ok(ctl(host, "stop"))
    left = status(host)
    pid = left.pop("st2actionrunner")
    assert set(left.values()) == {None}
    assert host.journal()[-1] == "st2ctl stop (still running: st2actionrunner)"
    assert pgrep(host) == [pid]
    ok(host.run("kill", str(pid)))
    time.sleep(0.3)
    assert status(host)["st2actionrunner"] == pid
    ok(host.run("kill", "-9", str(pid)))
    time.sleep(0.1)
    assert status(host)["st2actionrunner"] is None


def test_apt_upgrades_to_the_pinned_or_the_newest_release(st2_host_factory: Factory) -> None:
    host = st2_host_factory(version="3.4.0")
    asked = apt(host, "install", "--only-upgrade", *pins("3.8.1", "st2"))
    assert last(asked) == (1, "Do you want to continue? [Y/n] Abort.")
    assert host.installed()["st2"] == "3.4.0"
    ok(ctl(host, "stop"))
    out = ok(apt(host, *UPGRADE, *pins("3.8.1", "st2", "st2web", "st2chatops"), "st2mistral"))
    assert "Skipping st2mistral, it is not installed and only upgrades are requested.\n" in out
    assert "The following packages will be upgraded:\n  st2 st2chatops st2web\n" in out
    assert "3 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n" in out
    assert "Unpacking st2 (3.8.1-1) over (3.4.0-1) ...\n" in out
    assert "Setting up st2 (3.8.1-1) ...\nRegistering st2 runners on upgrade.\n" in out
    assert host.installed() == {"st2": "3.8.1", "st2web": "3.8.1", "st2chatops": "3.8.1"}
    assert ok(st2(host, "--version")) == "st2 3.8.1, on Python 3.8.10\n"  # with st2 stopped
    assert "apt-get upgrade st2 3.4.0-1 -> 3.8.1-1" in host.journal()
    assert (host.st2_bin / "st2-drop-st2exporter-marker-collections").exists()
    assert not (host.st2_bin / "st2-migrate-liveaction-executiondb").exists()
    ok(ctl(host, "start"))  # upgrading under running services is allowed, and journalled
    assert "Unpacking st2 (3.10.0-1) over (3.8.1-1)" in ok(apt(host, *UPGRADE, "st2", "st2web"))
    assert host.journal()[-1].startswith("apt-get upgrade st2web 3.8.1-1 -> 3.10.0-1 (while ")
    assert "st2 is already the newest version (3.10.0-1).\n" in ok(apt(host, *UPGRADE, "st2"))


def test_yum_prints_what_dnf_does_and_package_tools_refuse(st2_host_factory: Factory) -> None:
    host = st2_host_factory(version="3.7.0", package_tool="yum", running=False)
    refused = host.run(str(host.bin / "yum"), "update", "-y", "st2")
    assert refused.stderr.startswith("Error: This command has to be run with superuser privileges")
    asked = host.run_sudo("yum", "update", "st2-3.8.1")
    assert last(asked) == (1, "Is this ok [y/N]: Operation aborted.")
    out = ok(host.run_sudo("yum", "update", "-y", "st2-3.8.1", "st2web-3.8.1", "st2chatops-3.8.1"))
    assert re.search(r"^Upgrading:\n st2 +x86_64 +3\.8\.1-1\.el8 +StackStorm_stable ", out, re.M)
    assert "Transaction Summary\n" + "=" * 80 + "\nUpgrade  3 Packages\n" in out
    assert "Upgraded:\n  st2-3.8.1-1.el8.x86_64\n" in out
    assert out.endswith("\nComplete!\n")
    assert host.installed() == {"st2": "3.8.1", "st2web": "3.8.1", "st2chatops": "3.8.1"}
    assert "yum upgrade st2 3.7.0-1.el8 -> 3.8.1-1.el8" in host.journal()
    mistral = host.run_sudo("yum", "update", "-y", "st2mistral")
    assert "available, but not installed.\nNo match for argument: st2mistral\n" in mistral.stdout
    assert last(mistral) == (1, "Error: No packages marked for upgrade.")
    host = st2_host_factory(version="3.8.1", running=False)  # apt refuses too
    as_user = host.run(str(host.bin / "apt-get"), *UPGRADE, "st2")
    assert as_user.returncode == 100
    assert as_user.stderr.endswith("(/var/lib/dpkg/lock-frontend), are you root?\n")
    missing = apt(host, *UPGRADE, "st2=9.9.9")
    assert missing.stderr == "E: Version '9.9.9' for 'st2' was not found\n"
    assert apt(host, *UPGRADE, "nosuch").stderr == "E: Unable to locate package nosuch\n"
    assert host.installed()["st2"] == "3.8.1"
    assert host.run_sudo("yum", "update", "-y", "st2").stderr == "sudo: yum: command not found\n"
    bare = st2_host_factory(version="3.7.0", package_tool=None, running=False)
    for tool in ("apt-get", "yum"):
        assert not (bare.bin / tool).exists()
        assert bare.run_sudo(tool, "update").stderr == f"sudo: {tool}: command not found\n"


def test_migrations_ship_with_st2_run_in_order_and_can_fail(st2_host_factory: Factory) -> None:
    host = st2_host_factory(version="3.2.0", running=False)
    ok(apt(host, *UPGRADE, *pins("3.9.0", "st2", "st2web", "st2chatops")))
    scripts = ["st2-migrate-db-dict-field-values", "st2-drop-st2exporter-marker-collections"]
    scripts += ["st2-migrate-liveaction-executiondb"]
    asked = host.run(str(host.st2_bin / scripts[0]))  # asks, and meets the end of its input
    assert asked.returncode == 1
    assert asked.stderr.endswith("EOFError: EOF when reading a line\n")
    for script in scripts:
        out = ok(host.run(str(host.st2_bin / script), "--yes"))
    assert out.startswith("StackStorm v3.9 database field data migration script\n")
    success = "SUCCESS: All database objects migrated successfully (duration: 0 seconds)."
    assert last(host.run(str(host.st2_bin / scripts[-1]), "-y")) == (0, success)
    assert host.migrations_finished() == [*scripts, scripts[-1]]
    started = [line for line in host.journal() if line.endswith(" started")]
    assert started[:2] == [f"migration {scripts[0]} started"] * 2
    host.fail_migration(scripts[-1])  # fails after its first step: its journal has no end
    failed = host.run(str(host.st2_bin / scripts[-1]), "--yes")
    assert last(failed)[0] == 1
    assert last(failed)[1].startswith("ABORTED: Objects migration aborted on first failure")
    assert host.journal()[-1] == f"migration {scripts[-1]} step migrate execution objects"
    assert host.migrations_finished() == [*scripts, scripts[-1]]


def test_mistral_db_and_reload_before_3_3(st2_host_factory: Factory) -> None:
    host = st2_host_factory(version="2.10.0", packs=["ops"], running=False)
    ok(apt(host, *UPGRADE, *pins("3.2.0", *host.installed())))
    mistral = str(host.root / "opt/stackstorm/mistral/bin/mistral-db-manage")
    conf = ("--config-file", str(host.root / "etc/mistral/mistral.conf"))
    upgraded = ok(host.run_sudo(mistral, *conf, "upgrade", "head"))
    assert "INFO  [alembic.runtime.migration] Running upgrade 210 -> 302" in upgraded
    ok(host.run_sudo(mistral, *conf, "populate"))
    cleanup = "st2-cleanup-policy-delayed.py"
    ok(host.run(str(host.st2_bin / cleanup)))
    reload = ok(ctl(host, "reload", "--register-all"))
    flags = f"--config-file {host.root}/etc/st2/st2.conf --register-all"
    assert reload.startswith(f"Registering content...[flags = {flags}]\n")
    assert re.search(r"^\S+ \S+ INFO \[-\] Registered 12 actions\.$", reload, re.M)  # 6 packs
    assert reload.endswith("mistral-server is not running.\nmistral.api is not running.\n")
    journal = host.journal()
    assert journal[-6] == "mistral-db-manage upgrade head (210 -> 302)"
    assert journal[-5] == "mistral-db-manage populate"
    assert journal[-2:] == [f"migration {cleanup} finished", "st2ctl reload --register-all"]


def test_keys_export_load_secrets_and_list_limits(st2_host_factory: Factory) -> None:
    secret = {"name": "api_token", "value": "s3cr3t", "secret": True}
    old = st2_host_factory(version="3.4.0", keys=[{"name": "url", "value": "https://ops"}, secret])
    ok(old.sh(f"{old.bin}/st2 key list -n 0 -j > kv_file.json"))
    exported = (old.home / "kv_file.json").read_text()
    token = json.loads(exported)[0]
    assert (token["name"], token["secret"], token["encrypted"]) == ("api_token", True, True)
    assert (token["scope"], json.loads(exported)[1]["name"]) == ("st2kv.system", "url")
    assert re.fullmatch(r"[0-9A-F]{64,}", token["value"])
    new = st2_host_factory(version="3.8.1", crypto_key=old.crypto_key)
    (new.home / "kv_file.json").write_text(exported)
    loaded = ok(st2(new, "key", "load", "kv_file.json"))
    assert loaded.splitlines()[1].replace(" ", "") == "|name|value|secret|scope|user|ttl|"
    assert new.datastore()[0]["value"] == token["value"]  # stored as exported
    got = json.loads(ok(st2(new, "key", "get", "api_token", "--decrypt", "-j")))
    assert (got["value"], got["encrypted"]) == ("s3cr3t", False)
    stranger = st2_host_factory(version="3.8.1")  # another datastore key: the secret is lost
    (stranger.home / "kv_file.json").write_text(exported)
    ok(st2(stranger, "key", "load", "kv_file.json"))
    failed = st2(stranger, "key", "list", "--decrypt")
    assert failed.stdout.splitlines()[0] == "ERROR: 500 Server Error: Internal Server Error"
    keys = [{"name": f"k{n:02}", "value": "v"} for n in range(60)]
    host = st2_host_factory(version="3.8.1", keys=keys)
    assert len(json.loads(ok(st2(host, "key", "list", "-j")))) == 50
    assert len(json.loads(ok(st2(host, "key", "list", "-n", "0", "-j")))) == 60
    table = ok(st2(host, "key", "list"))
    assert "| Note: Only first 50 key value pairs are displayed. Use -n/--last flag" in table
    url = {"name": "url", "value": "https://ops"}
    old = st2_host_factory(version="1.4.0", keys=[url])
    assert json.loads(ok(st2(old, "key", "list", "-j"))) == [url]


def test_packs_install_git_urls(st2_host_factory: Factory, st2_pack_repo_factory: Repos) -> None:
    """From 2.1 on, packs.install takes git URLs, each a repository of one pack."""
    host = st2_host_factory(version="3.8.1")
    url = st2_pack_repo_factory("ops_tools")
    out = ok(st2(host, "run", "packs.install", f"packs={url}"))
    assert out.startswith(".\nid: ")
    assert f"action.ref: packs.install\nparameters: \n  packs:\n  - {url}\nstatus: succeeded" in out
    assert "    message: Successfully installed packs\n    packs_list:\n    - ops_tools\n" in out
    assert re.search(r"^\| \w{24} +\| succeeded +\| register_pack +\| packs\.load ", out, re.M)
    assert "ops_tools" in host.packs()
    assert host.journal()[-1] == f"packs.install ops_tools from {url}"
    refused = st2(host, "run", "packs.install", "packs=ops_tools", f"repo_url={url}")
    assert refused.stdout == (
        "ERROR: 400 Client Error: Bad Request\nMESSAGE: Additional properties are not allowed "
        "('repo_url' was unexpected) for url: http://127.0.0.1:9101/v1/executions\n"
    )
    exchange = st2(host, "run", "packs.install", "packs=nosuch")  # no Exchange index here
    assert exchange.returncode == 1
    assert re.search(r"^status: failed \(\d+s elapsed\)$", exchange.stdout, re.M)
    assert '- message: No record of the "nosuch" pack in the index.\n' in exchange.stdout


def test_packs_install_pre_2_1(st2_host_factory: Factory, st2_pack_repo_factory: Repos) -> None:
    """Before 2.1, packs.install took pack names from one repo_url."""
    host = st2_host_factory(version="2.0.0")
    url = st2_pack_repo_factory("alpha", "beta", layout="subtree")
    install = ("run", "packs.install", "packs=alpha,beta", f"repo_url={url}", "subtree=true")
    assert "status: succeeded\n" in ok(st2(host, *install))
    assert {"alpha", "beta"} <= set(host.packs())
    ok(ctl(host, "stop"))
    ok(ctl(host, "restart-component", "st2api"))  # the API answers, nothing runs the action
    waiting = st2(host, *install)
    assert waiting.returncode == 1
    assert "st2actionrunner not running; the real CLI would keep waiting" in waiting.stderr


def test_ssh_and_audit_logs(st2_host_factory: Factory, ssh_server_module: SshServer) -> None:
    """The shims run by absolute path in a plain SSH session; the audit logs are there to copy."""
    host = st2_host_factory(version="3.8.1", audit_logs=4, running=False)
    v = host.variables()
    shell = ParamikoConnector().connect(ssh_server_module.target())
    try:
        started = shell.run(f"{v['sudo']} {v['bin']}/st2ctl start", timeout=30)
        assert started.ok, started.tail()
        version = shell.run(f"{v['st2_bin']}/st2 --version", timeout=10)
        assert version.stdout.text == "st2 3.8.1, on Python 3.8.10\n"
    finally:
        shell.close()
    assert list(host.running()) == sorted(V3)  # the services outlive the session
    logs = host.audit_logs()
    names = ["st2actionrunner.4101", "st2api", "st2auth", "st2rulesengine"]
    assert [log.name for log in logs] == [f"{name}.audit.log" for name in names]
    assert (host.log_dir / "st2api.log").is_file()  # plain logs stay out of *.audit.log
    records = [json.loads(line) for line in logs[0].read_text().splitlines()]
    assert [record["_audit"] for record in records] == [1, 1, 1]
    ok(host.sh(f"mkdir -p safe && cp {host.log_dir}/*.audit.log safe/"))
    assert sorted(p.name for p in (host.home / "safe").iterdir()) == [log.name for log in logs]
