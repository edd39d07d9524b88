"""StackStorm upgraded by its runbook over real SSH, against the shimmed StackStorm hosts.

One run of each strategy is asked for and approved in Slack (signed requests, the emulator);
the rest drive the engine through `UpgradeService`. What the tests believe is the hosts' own
state: the journal of what the shims did, installed versions, the datastore, packs, files.
"""

from __future__ import annotations

import json
import logging
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from adapters.sql_store import SqlRunStore, upgrade_schema
from bot.domain.approval import Decision
from bot.domain.errors import DowngradeRefused, VersionNotAvailable
from bot.domain.plan import PlannedStep
from bot.domain.run import Phase, Run, RunState, StepResult, StepStatus
from bot.engine.planning import UpgradeRequest
from bot.engine.report import RunReport, build_report
from bot.engine.runner import SilentObserver
from bot.engine.service import UpgradeService
from bot.slack.blocks import APPROVE_ACTION
from bot.slack.blocks_report import summary_blocks
from tests.hostkit.deployment import engine_service
from tests.hostkit.slackbot import BOB, SlackBot, text_of, wait_for
from tests.hostkit.st2_deployment import St2Deployment
from tests.hostkit.stackstorm import St2Host, new_crypto_key

pytestmark = pytest.mark.services

Deployments = Callable[..., St2Deployment]
PackRepos = Callable[..., str]
CORE = ("st2", "st2web", "st2chatops")
# short enough that the st2 CLI's tables (columns wrap at 28 characters) print them whole
SECRET = "hunter2-Sekr3t-kv"
PLAIN = "hooks.test/kv-only"
KEYS = [
    {"name": "api_token", "value": SECRET, "secret": True},
    {"name": "webhook_url", "value": PLAIN},
]
MIGRATION = "Run the migration script of st2"


# -- driving the engine -------------------------------------------------------------------------


def _approved(service: UpgradeService, version: str, **request: Any) -> int:
    approval = service.request(
        UpgradeRequest(product="st2", version=version, **request), requester="U0ALICE01"
    )
    outcome = service.vote(
        approval.run.id, user=BOB, decision=Decision.APPROVE, digest=None, via="test"
    )
    assert outcome.now_approved
    return approval.run.id


def _report(service: UpgradeService, run: Run) -> RunReport:
    return build_report(run, service.store.steps(run.id))


def _slack_bot(
    factory: Callable[..., SlackBot], deployment: St2Deployment, database: Path
) -> tuple[SlackBot, SqlRunStore]:
    """A bot behind the Slack emulator, its runs kept in a fresh SQLite file at `database`."""
    url = f"sqlite:///{database}"
    upgrade_schema(url)
    store = SqlRunStore(url)
    bot = factory(deployment.config(), store=store, database_url=url)
    bot.emulator.limiter.enabled = False  # Slack's pacing is the surface tests' subject
    return bot, store


def _through_the_gate(service: UpgradeService, run_id: int) -> Run:
    run = service.execute(run_id)
    assert run.state is RunState.WAITING, _report(service, run).failed_step
    gate = service.approval(run)
    assert gate.gate is not None
    assert gate.gate.step.id == "repoint"
    service.vote(run_id, user=BOB, decision=Decision.APPROVE, digest=gate.digest, via="test")
    return service.resume(run_id)


def _ran(steps: Sequence[StepResult], phase: Phase = Phase.UPGRADE) -> list[str]:
    return [s.step_id for s in steps if s.phase is phase]


def _position(journal: list[str], start: str) -> int:
    return next(i for i, line in enumerate(journal) if line.startswith(start))


def _running_everything(host: St2Host) -> None:
    status = host.run(str(host.bin / "st2ctl"), "status").stdout
    assert "is not running" not in status, status
    assert status.count(" PID: ") >= 10, status


def _kept_state(host: St2Host) -> tuple[dict[str, str], list[str], list[dict[str, Any]], Any]:
    """What a rollover must leave alone on the old host."""
    return host.installed(), host.journal(), host.datastore(), host.running()


# -- the package strategy -----------------------------------------------------------------------


def test_package_upgrade_asked_in_slack(
    st2_deployment_factory: Deployments,
    slack_bot_factory: Callable[..., SlackBot],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """3.4.0 -> 3.8.1 with apt: the plan names the migrations of 3.5 and 3.8 (3.6 and 3.7 have
    none); the packages are upgraded with every service stopped; secrets never leave the host."""
    caplog.set_level(logging.DEBUG)
    deployment = st2_deployment_factory(version="3.4.0", keys=KEYS, packs=["ops"])
    host = deployment.host
    ciphertext = next(i["value"] for i in host.datastore() if i["name"] == "api_token")
    database = tmp_path / "bot.db"
    bot, store = _slack_bot(slack_bot_factory, deployment, database)

    status, _ = bot.command("st2 3.8.1")
    assert status == 200
    plan = wait_for("the plan", lambda: bot.plan_messages(), timeout=90)[-1]
    shown = text_of(plan)
    assert "3.4.0 → 3.8.1" in shown
    assert f"{MIGRATION} 3.5: st2-migrate-db-dict-field-values" in shown
    assert f"{MIGRATION} 3.8: st2-drop-st2exporter-marker-collections" in shown
    assert shown.index("3.5: st2-migrate") < shown.index("3.8: st2-drop")
    assert "cannot be undone" in shown
    assert "st2-migrate-db-dict-field-values --yes" in shown
    assert bot.react(BOB, "white_check_mark", plan.ts) == 200

    summary = wait_for(
        "the summary", lambda: [m for m in bot.thread(plan.ts) if m.reply_broadcast], timeout=120
    )[-1]
    [run] = store.runs(limit=1)
    assert run.state is RunState.SUCCEEDED, text_of(summary)
    said = text_of(summary)
    backup = next(
        s.captures["backup_path"] for s in store.steps(run.id) if "backup_path" in s.captures
    )
    assert backup in said
    assert "st2_version is 3.8.1" in said

    assert host.installed() == dict.fromkeys(CORE, "3.8.1")
    assert host.migrations_finished() == [
        "st2-migrate-db-dict-field-values",
        "st2-drop-st2exporter-marker-collections",
    ]
    journal = host.journal()
    stop, start = _position(journal, "st2ctl stop"), len(journal) - 1
    assert journal[stop] == "st2ctl stop"  # nothing outlived it
    upgrades = [i for i, line in enumerate(journal) if line.startswith("apt-get upgrade ")]
    assert [journal[i].split()[2] for i in upgrades] == list(CORE)
    assert not any("while running" in line for line in journal)
    migrations = [i for i, line in enumerate(journal) if line.startswith("migration ")]
    reload = journal.index("st2ctl reload --register-all")
    assert _position(journal, "apt-get update") < stop < upgrades[0]
    assert upgrades[-1] < migrations[0] < migrations[-1] < reload < start
    assert journal[start] == "st2ctl start"
    _running_everything(host)
    with tarfile.open(host.root / backup.removeprefix(str(host.root) + "/")) as archive:
        names = archive.getnames()
        assert "st2/st2.conf" in names
        assert "st2/keys/datastore_key.json" in names
        [export] = [n for n in names if n.startswith("datastore-")]
        saved = archive.extractfile(export)
        assert saved is not None
        exported = json.loads(saved.read())
    assert {i["name"]: i["value"] for i in exported}["api_token"] == ciphertext  # still encrypted

    _assert_nowhere((SECRET, ciphertext[:28], PLAIN), bot, store, run.id, caplog, database)
    store.close()


def test_yum_before_3_3_upgrades_mistral_and_the_enterprise_packages(
    st2_deployment_factory: Deployments,
) -> None:
    packages = [*CORE, "st2mistral", "bwc-enterprise"]
    deployment = st2_deployment_factory(version="2.10.0", package_tool="yum", packages=packages)
    deployment.main_vars["enterprise_packages"] = "bwc-enterprise"
    deployment.write_config()
    host = deployment.host
    service = engine_service(deployment.config())
    run_id = _approved(service, "3.2.0")
    run = service.execute(run_id)
    assert run.state is RunState.SUCCEEDED, _report(service, run).failed_step

    assert host.installed() == dict.fromkeys(packages, "3.2.0")
    journal = host.journal()
    upgrades = [i for i, line in enumerate(journal) if line.startswith("yum upgrade ")]
    assert len(upgrades) == len(packages)
    mistral = _position(journal, "mistral-db-manage upgrade head")
    assert journal[mistral] == "mistral-db-manage upgrade head (210 -> 302)"
    assert upgrades[-1] < mistral < _position(journal, "mistral-db-manage populate")
    assert _position(journal, "mistral-db-manage populate") < _position(journal, "migration ")
    assert host.migrations_finished() == ["st2-cleanup-policy-delayed.py"]
    _running_everything(host)
    assert "mistral.api PID: " in host.run(str(host.bin / "st2ctl"), "status").stdout


def test_a_yum_rollback_before_3_3_reinstalls_mistral_and_the_enterprise_packages(
    st2_deployment_factory: Deployments,
) -> None:
    packages = [*CORE, "st2mistral", "bwc-enterprise"]
    deployment = st2_deployment_factory(version="3.0.0", package_tool="yum", packages=packages)
    deployment.main_vars["enterprise_packages"] = "bwc-enterprise"
    deployment.write_config()
    host = deployment.host
    host.fail_migration("st2-cleanup-policy-delayed.py")
    service = engine_service(deployment.config())
    run = service.execute(_approved(service, "3.2.0"))
    report = _report(service, run)
    assert run.state is RunState.ROLLED_BACK, report.failed_step
    assert "reinstall-packages-with-mistral" in _ran(report.steps, Phase.ROLLBACK)
    assert host.installed() == dict.fromkeys(packages, "3.0.0")
    downgrades = [line for line in host.journal() if line.startswith("yum downgrade ")]
    assert [line.split()[2] for line in downgrades] == packages
    assert report.cannot_undo == (
        "Upgrade Mistral's database schema",
        f"{MIGRATION} 3.1: st2-cleanup-policy-delayed.py (stopped partway)",
    )
    _running_everything(host)


def test_skipped_releases_run_their_migrations_in_version_order(
    st2_deployment_factory: Deployments,
) -> None:
    """2.0.0 -> 3.10.0 passes 2.1, 3.1, 3.5, 3.8, 3.9 and 3.10 (3.10 after 3.9, as versions)."""
    deployment = st2_deployment_factory(version="2.0.0", keys=KEYS)
    host = deployment.host
    service = engine_service(deployment.config())
    run_id = _approved(service, "3.10.0")
    migrations = [p.step.title for p in service.run(run_id).plan.steps if p.step.irreversible]
    assert migrations == [
        f"{MIGRATION} 2.1: st2-migrate-datastore-scopes.py",
        f"{MIGRATION} 2.1: st2-migrate-runners.sh",
        f"{MIGRATION} 3.1: st2-cleanup-policy-delayed.py",
        f"{MIGRATION} 3.5: st2-migrate-db-dict-field-values",
        f"{MIGRATION} 3.8: st2-drop-st2exporter-marker-collections",
        f"{MIGRATION} 3.9: st2-migrate-liveaction-executiondb",
        f"{MIGRATION} 3.10: st2-add-task-item-state-collection",
    ]
    run = service.execute(run_id)
    assert run.state is RunState.SUCCEEDED, _report(service, run).failed_step
    assert host.migrations_finished() == [
        "st2-migrate-datastore-scopes.py",
        "st2-migrate-runners.sh",
        "st2-cleanup-policy-delayed.py",
        "st2-migrate-db-dict-field-values",
        "st2-drop-st2exporter-marker-collections",
        "st2-migrate-liveaction-executiondb",
        "st2-add-task-item-state-collection",
    ]
    assert {k: v for k, v in host.installed().items() if k in CORE} == dict.fromkeys(CORE, "3.10.0")
    assert {i["scope"] for i in host.datastore()} == {"st2kv.system"}  # 2.1's scope migration
    _running_everything(host)


def test_a_failing_migration_stops_there_and_the_old_packages_come_back(
    st2_deployment_factory: Deployments,
) -> None:
    deployment = st2_deployment_factory(version="3.4.0")
    host = deployment.host
    host.fail_migration("st2-drop-st2exporter-marker-collections")  # 3.8's, after 3.5's
    conf = host.root / "etc/st2/st2.conf"
    config = conf.read_text()

    class NewPackageConfig(SilentObserver):
        """The new st2 package brings its own st2.conf, as a package upgrade may."""

        def step_started(self, run: Run, phase: Phase, planned: PlannedStep) -> None:
            if planned.step.id == "migrate-3.5-1":
                conf.write_text(config + "\n[messaging]\nurl = amqp://changed-by-3.9.0\n")

    service = engine_service(deployment.config())
    run_id = _approved(service, "3.9.0")
    run = service.execute(run_id, NewPackageConfig())
    report = _report(service, run)

    assert run.state is RunState.ROLLED_BACK, report.failed_step
    assert report.failed_step is not None
    assert report.failed_step.step_id == "migrate-3.8-1"
    upgrade = [s for s in report.steps if s.phase is Phase.UPGRADE]
    assert [s.step_id for s in upgrade if s.step_id.startswith("migrate-")] == [
        "migrate-3.5-1",
        "migrate-3.8-1",  # 3.9's never started
    ]
    assert report.cannot_undo == (
        f"{MIGRATION} 3.5: st2-migrate-db-dict-field-values",
        f"{MIGRATION} 3.8: st2-drop-st2exporter-marker-collections (stopped partway)",
    )
    assert host.migrations_finished() == ["st2-migrate-db-dict-field-values"]
    assert host.journal().count("migration st2-drop-st2exporter-marker-collections started") == 1
    assert "migration st2-drop-st2exporter-marker-collections finished" not in host.journal()
    assert _ran(report.steps, Phase.ROLLBACK) == [
        "rollback-stop",
        "reinstall-packages",
        "restore-config",
        "rollback-register-content",
        "rollback-start",
        "rollback-check-version",
        "rollback-check-status",
    ]
    assert host.installed() == dict.fromkeys(CORE, "3.4.0")
    assert "apt-get downgrade st2 3.9.0-1 -> 3.4.0-1" in host.journal()
    assert conf.read_text() == config  # restored from the backup
    _running_everything(host)

    said = json.dumps(summary_blocks(report), ensure_ascii=False)
    assert "rollback cannot undo" in said
    assert f"{MIGRATION} 3.5: st2-migrate-db-dict-field-values" in said
    assert "ABORTED: Collection deletion aborted on first failure" in said
    assert "rollback_st2_version is 3.4.0" in said


def test_a_process_left_after_the_stop_is_named_and_rolled_back(
    st2_deployment_factory: Deployments,
) -> None:
    deployment = st2_deployment_factory(version="3.7.0")
    host = deployment.host
    host.leave_running("st2actionrunner")
    service = engine_service(deployment.config())
    run = service.execute(_approved(service, "3.8.1"))
    report = _report(service, run)
    assert run.state is RunState.ROLLED_BACK
    assert report.failed_step is not None
    assert report.failed_step.step_id == "check-stopped"
    assert "opt/stackstorm/st2/bin/st2actionrunner" in report.failed_step.error
    assert not any(line.startswith("apt-get upgrade") for line in host.journal())
    assert host.installed() == dict.fromkeys(CORE, "3.7.0")


def test_a_host_with_neither_apt_nor_yum_is_refused_before_anything_stops(
    st2_deployment_factory: Deployments,
) -> None:
    deployment = st2_deployment_factory(version="3.4.0", package_tool=None)
    host = deployment.host
    before = _kept_state(host)
    service = engine_service(deployment.config())
    run = service.execute(_approved(service, "3.8.1"))
    report = _report(service, run)
    assert run.state is RunState.FAILED
    assert report.failed_step is not None
    assert report.failed_step.step_id == "package-tool"
    assert report.failed_step.result is not None
    assert "neither apt-get nor yum" in report.failed_step.result.stdout.text
    assert "Nothing was stopped" in json.dumps(summary_blocks(report))
    assert _ran(report.steps) == ["package-tool"]
    assert not report.rollback_offered
    assert _kept_state(host) == before
    assert host.journal() == ["st2ctl start"]  # laid out and started; nothing since


def test_an_older_or_unknown_target_is_refused_at_planning(
    st2_deployment_factory: Deployments,
) -> None:
    deployment = st2_deployment_factory(version="3.4.0")
    before = _kept_state(deployment.host)
    service = engine_service(deployment.config())
    with pytest.raises(DowngradeRefused, match=r"runs StackStorm 3\.4\.0, which is newer than"):
        service.plan(UpgradeRequest(product="st2", version="3.2.0"))
    with pytest.raises(DowngradeRefused, match=r"already runs StackStorm 3\.4\.0"):
        service.plan(UpgradeRequest(product="st2", version="3.4.0"))
    with pytest.raises(VersionNotAvailable) as unknown:
        service.plan(UpgradeRequest(product="st2", version="3.8.2"))
    assert "not in the stackstorm runbook's version list" in unknown.value.problem
    assert "3.10.0" in unknown.value.fix
    assert _kept_state(deployment.host) == before
    assert service.store.runs() == []


# -- the rollover strategy ----------------------------------------------------------------------


def test_rollover_asked_in_slack_waits_for_the_repointing(
    st2_deployment_factory: Deployments,
    st2_pack_repo_factory: PackRepos,
    slack_bot_factory: Callable[..., SlackBot],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """3.4.0 on an apt host rolls over to 3.8.1 on a new yum host: datastore (secrets still
    encrypted), packs from git, audit logs kept; the old instance is left exactly as it was."""
    caplog.set_level(logging.DEBUG)
    deployment = st2_deployment_factory(version="3.4.0", keys=KEYS, packs=["ops"], audit_logs=4)
    old = deployment.host
    new = deployment.add_new_host(version="3.8.1", package_tool="yum")
    deployment.new_vars["pack_urls"] = st2_pack_repo_factory("ops")
    deployment.write_config()
    ciphertext = next(i["value"] for i in old.datastore() if i["name"] == "api_token")
    before = _kept_state(old)
    database = tmp_path / "bot.db"
    bot, store = _slack_bot(slack_bot_factory, deployment, database)

    status, _ = bot.command("st2 3.8.1 strategy=rollover")
    assert status == 200
    plan = wait_for("the plan", lambda: bot.plan_messages(), timeout=90)[-1]
    shown = text_of(plan)
    assert "rollover" in shown
    assert "this strategy has no rollback steps" in shown
    assert "prod/st2-new" in shown
    assert "Add scope and secret" not in shown  # the old instance is 3.4.0
    assert bot.react(BOB, "white_check_mark", plan.ts) == 200

    gate = wait_for(
        "the gate",
        lambda: [m for m in bot.thread(plan.ts) if "waits at step" in text_of(m)],
        timeout=120,
    )[-1]
    [run] = store.runs(limit=1)
    assert run.state is RunState.WAITING
    asked = text_of(gate)
    assert "Repoint external services (webhooks, chatops, sensors) to the new host" in asked
    assert new.installed() == dict.fromkeys(CORE, "3.8.1")
    _running_everything(new)
    bot.click(BOB, APPROVE_ACTION, f"{run.id}:{run.plan.digest}.repoint", gate.ts)
    summary = wait_for(
        "the summary", lambda: [m for m in bot.thread(plan.ts) if m.reply_broadcast], timeout=120
    )[-1]
    [run] = store.runs(limit=1)
    assert run.state is RunState.SUCCEEDED, text_of(summary)
    steps = store.steps(run.id)
    assert _ran(steps)[-2:] == ["repoint", "new-check-status-after"]

    # the datastore, as stored: the same ciphertext, which the new host's (same) key decrypts
    assert sorted(new.datastore(), key=lambda i: i["name"]) == sorted(
        old.datastore(), key=lambda i: i["name"]
    )
    got = new.run(str(new.bin / "st2"), "key", "get", "api_token", "--decrypt", "-j")
    assert json.loads(got.stdout)["value"] == SECRET
    assert "ops" in new.packs()
    assert any(line.startswith("packs.install ops from file://") for line in new.journal())
    # the audit logs, whole, in the new host's backup folder; the summary says where
    kept = next(s.captures["backup_path"] for s in steps if "backup_path" in s.captures)
    assert kept in text_of(summary)
    path = Path(kept.split(":", 1)[1])
    assert path.parent == new.root / "var/backups/st2"
    with tarfile.open(path) as archive:
        assert sorted(archive.getnames()) == [log.name for log in old.audit_logs()]
        for log in old.audit_logs():
            member = archive.extractfile(log.name)
            assert member is not None
            assert member.read() == log.read_bytes()
    assert not list((old.root / "var/tmp/st2-rollover").glob("datastore-*"))  # export removed
    assert not list((new.root / "var/tmp/st2-rollover").glob("datastore-*"))
    assert _kept_state(old) == before  # never stopped, upgraded or written to

    # a ciphertext wraps in a table: its first line of 28 characters is what would show
    _assert_nowhere((SECRET, ciphertext[:28], PLAIN), bot, store, run.id, caplog, database)
    store.close()


def test_rollover_from_before_1_5_adds_scope_and_secret(
    st2_deployment_factory: Deployments, st2_pack_repo_factory: PackRepos
) -> None:
    """1.4.0 -> 2.6.0: the export has names and values only; the new host (2.6 loads scope and
    secret) gets them as system-scoped plain items; st2mistral comes with a target before 3.3."""
    keys = [{"name": "region", "value": "eu-west"}, {"name": "owner", "value": "ops-team"}]
    deployment = st2_deployment_factory(version="1.4.0", keys=keys)
    old = deployment.host
    new = deployment.add_new_host(version="2.6.0")
    url = st2_pack_repo_factory("tools")
    deployment.new_vars["pack_urls"] = url
    deployment.write_config()
    before = _kept_state(old)
    service = engine_service(deployment.config())
    run_id = _approved(service, "2.6.0", strategy="rollover")
    ids = [p.step.id for p in service.run(run_id).plan.steps]
    assert "add-scope-and-secret" in ids
    assert "new-install-with-mistral" in ids
    assert "install-packs-before-2-1" not in ids

    run = _through_the_gate(service, run_id)
    assert run.state is RunState.SUCCEEDED, _report(service, run).failed_step
    assert new.installed() == dict.fromkeys([*CORE, "st2mistral"], "2.6.0")
    assert "mistral-db-manage populate" in new.journal()
    stored = sorted(new.datastore(), key=lambda i: i["name"])
    assert stored == [
        {"name": "owner", "value": "ops-team", "secret": False, "scope": "st2kv.system"},
        {"name": "region", "value": "eu-west", "secret": False, "scope": "st2kv.system"},
    ]
    assert "tools" in new.packs()
    assert _kept_state(old) == before


def test_rollover_to_before_2_1_installs_packs_by_name_and_a_rejected_gate_stops_it(
    st2_deployment_factory: Deployments, st2_pack_repo_factory: PackRepos
) -> None:
    deployment = st2_deployment_factory(version="1.5.0", keys=[{"name": "a", "value": "b"}])
    old = deployment.host
    new = deployment.add_new_host(version="2.0.0")
    url = st2_pack_repo_factory("alpha", "beta", layout="subtree")
    deployment.new_vars.update(packs="alpha,beta", packs_repo=url)
    deployment.write_config()
    before = _kept_state(old)
    service = engine_service(deployment.config())
    run_id = _approved(service, "2.0.0", strategy="rollover")
    assert "install-packs" not in [p.step.id for p in service.run(run_id).plan.steps]
    run = service.execute(run_id)
    assert run.state is RunState.WAITING, _report(service, run).failed_step
    assert {"alpha", "beta"} <= set(new.packs())
    assert f"packs.install alpha from {url}" in new.journal()

    service.vote(run_id, user=BOB, decision=Decision.REJECT, digest=None, via="test")
    run = service.reject_gate(run_id)
    report = _report(service, run)
    assert run.state is RunState.FAILED  # nothing to roll back: the old instance is in use
    assert report.outcome == "failed; the instance was not rolled back"
    assert not report.rollback_offered
    assert _kept_state(old) == before


def test_rollover_refuses_a_new_host_that_cannot_decrypt_the_secrets(
    st2_deployment_factory: Deployments,
) -> None:
    deployment = st2_deployment_factory(version="3.4.0", keys=KEYS)
    old = deployment.host
    new = deployment.add_new_host(version="3.8.1", crypto_key=new_crypto_key())
    deployment.new_vars["pack_urls"] = "none"
    deployment.write_config()
    before = _kept_state(old)
    service = engine_service(deployment.config())
    run = service.execute(_approved(service, "3.8.1", strategy="rollover"))
    report = _report(service, run)
    assert run.state is RunState.FAILED
    assert report.failed_step is not None
    assert report.failed_step.step_id == "new-datastore-key"
    assert report.failed_step.result is not None
    assert "Copy /etc/st2/keys/datastore_key.json" in report.failed_step.result.stdout.text
    assert new.installed() == {}
    assert new.datastore() == []
    assert _kept_state(old) == before


# -- secrets ------------------------------------------------------------------------------------


def _assert_nowhere(
    values: tuple[str, ...],
    bot: SlackBot,
    store: SqlRunStore,
    run_id: int,
    caplog: pytest.LogCaptureFixture,
    database: Path,
) -> None:
    """None of `values` is in what the bot said to Slack (every Web API call, every upload),
    in its log, in the step outputs it stored, or anywhere in its database files."""
    calls = [(c.method, c.args, c.response) for c in bot.emulator.calls()]
    uploads = [(u.filename, u.content, u.initial_comment) for u in bot.emulator.uploads()]
    outputs = [
        (s.result.stdout.text, s.result.stderr.text, s.error, dict(s.captures))
        for s in store.steps(run_id)
        if s.result is not None
    ]
    assert any(StepStatus.SUCCEEDED is s.status for s in store.steps(run_id))
    places = {
        "Slack": json.dumps(calls, ensure_ascii=False, default=str),
        "uploads": repr(uploads),
        "log": caplog.text,
        "step outputs": json.dumps(outputs, ensure_ascii=False),
    }
    files = [database, *database.parent.glob(f"{database.name}-*")]
    assert caplog.text, "the bot logged nothing: the log check would prove nothing"
    for value in values:
        for where, text in places.items():
            assert value not in text, f"{value!r} is in the {where}"
        for file in files:
            assert value.encode() not in file.read_bytes(), f"{value!r} is in {file.name}"
