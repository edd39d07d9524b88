"""The StackStorm runbook: its version table and migrations are StackStorm's (as the test hosts
ship them), and its plans choose the right steps for each pair of versions."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from adapters.memory.clock import FakeClock
from adapters.memory.docker import MemoryDockerConnector, MemoryRegistry
from adapters.memory.http import MemoryHttpCheck
from adapters.memory.shell import MemoryShellConnector
from bot.config import load_config
from bot.domain.errors import UnknownInstance, UserError
from bot.domain.inventory import Environment, Instance, Inventory, SshTarget
from bot.domain.plan import Plan
from bot.domain.runbook import Catalog, ShellAction
from bot.engine.planning import Planner, UpgradeRequest
from bot.engine.session import Ports
from bot.runbooks import BUNDLED, load_runbook
from tests.hostkit.stackstorm import RELEASES, SHIMS

RUNBOOK = load_runbook(BUNDLED / "stackstorm.yaml")
MIGRATION = "Run the migration script of st2"
# The scripts that ask "press enter to proceed" (the v3.5 and v3.9 field data migrations).
ASKING = {"st2-migrate-db-dict-field-values", "st2-migrate-liveaction-executiondb"}
CONFOLD = "Dpkg::Options::=--force-confold"  # a locally changed st2.conf is kept, never asked


def _plan(
    current: str,
    target: str,
    *,
    strategy: str | None = None,
    new_host: bool = False,
    new_vars: dict[str, str] | None = None,
) -> Plan:
    """Plan on in-memory hosts: st2-prod runs `current`; st2-new is its `new` peer if asked."""

    def ssh(host: str) -> SshTarget:
        return SshTarget(host=host, user="st2", key_file=Path("/k"), known_hosts=Path("/kh"))

    prod = Instance(
        name="st2-prod",
        environment="prod",
        product="stackstorm",
        ssh=ssh("st2-prod"),
        peers={"new": "prod/st2-new"} if new_host else {},
    )
    new = Instance(
        name="st2-new",
        environment="prod",
        product="",
        ssh=ssh("st2-new"),
        variables=new_vars if new_vars is not None else {"pack_urls": "none"},
    )
    inventory = Inventory(
        environments={"prod": Environment(name="prod", instances=(prod, new))},
        default_environment="prod",
    )
    shells = MemoryShellConnector()
    shells.shell("st2-prod").on(r"/st2 --version", stdout=f"st2 {current}, on Python 3.8.10\n")
    shells.shell("st2-new")
    ports = Ports(
        ssh=shells,
        docker=MemoryDockerConnector(),
        registry=MemoryRegistry(),
        http=MemoryHttpCheck(),
        clock=FakeClock(),
    )
    planner = Planner(Catalog(runbooks=(RUNBOOK,)), inventory, ports)
    return planner.build(UpgradeRequest(product="st2", version=target, strategy=strategy))


def _ids(plan: Plan) -> list[str]:
    return [p.step.id for p in plan.steps]


def test_names_versions_and_the_default_strategy() -> None:
    assert Catalog(runbooks=(RUNBOOK,)).find("st2") is RUNBOOK
    assert RUNBOOK.product == "stackstorm"
    assert RUNBOOK.default_strategy == "package"
    assert set(RUNBOOK.strategies) == {"package", "rollover"}
    assert RUNBOOK.versions.kind == "list"
    assert RUNBOOK.versions.versions == RELEASES  # what the package repository offers


def test_the_migrations_are_the_scripts_st2_ships_in_their_order() -> None:
    shipped = [
        tuple(line.split())
        for line in (SHIMS / "migrations.list").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    listed = [
        (version, command.split()[0])
        for version, commands in RUNBOOK.migrations.items()
        for command in commands
    ]
    assert listed == shipped
    for commands in RUNBOOK.migrations.values():
        for command in commands:
            script, *arguments = command.split()
            assert arguments == (["--yes"] if script in ASKING else []), command


def test_the_plan_names_each_migration_with_its_release_and_undoes_with_pinned_packages() -> None:
    plan = _plan("3.4.0", "3.8.1")
    assert _ids(plan) == [
        "package-tool",
        "refresh-package-lists",
        "backup",
        "stop",
        "check-stopped",
        "upgrade-packages",
        "migrate-3.5-1",
        "migrate-3.8-1",
        "register-content",
        "start",
        "check-version",
        "check-status",
    ]
    migrations = [p for p in plan.steps if p.step.id.startswith("migrate-")]
    assert [p.step.title for p in migrations] == [
        f"{MIGRATION} 3.5: st2-migrate-db-dict-field-values",
        f"{MIGRATION} 3.8: st2-drop-st2exporter-marker-collections",
    ]
    assert all(p.step.irreversible and p.step.destructive for p in migrations)
    assert migrations[0].preview == (
        "sudo -n /opt/stackstorm/st2/bin/st2-migrate-db-dict-field-values --yes"
    )
    upgrade = plan.step("upgrade-packages").preview
    pinned = "install -y --only-upgrade st2=3.8.1-1 st2web=3.8.1-1 st2chatops=3.8.1-1"
    assert f"DEBIAN_FRONTEND=noninteractive /usr/bin/apt-get -o {CONFOLD} {pinned}" in upgrade
    assert "yum update -y st2-3.8.1 st2web-3.8.1 st2chatops-3.8.1" in upgrade
    undo = plan.step("reinstall-packages").preview
    assert "--allow-downgrades st2=3.4.0-1 st2web=3.4.0-1 st2chatops=3.4.0-1" in undo
    assert "yum install -y st2-3.4.0 st2web-3.4.0 st2chatops-3.4.0" in undo
    assert plan.auto_rollback
    assert plan.backup_location == "/var/backups/st2/"


def test_a_version_is_pinned_as_the_version_table_spells_it() -> None:
    """3.8 is 3.8.0, but apt knows the package as 3.8.0-1: the plan uses the listed text."""
    plan = _plan("3.4.0", "3.8")
    assert plan.to_version == "3.8.0"
    assert "st2=3.8.0-1 st2web=3.8.0-1 st2chatops=3.8.0-1" in plan.step("upgrade-packages").preview


def test_the_backup_is_taken_before_anything_stops() -> None:
    steps = [p.step for p in _plan("3.4.0", "3.10.0").steps]
    first_change = next(i for i, s in enumerate(steps) if s.destructive)
    assert steps[first_change].id == "stop"
    assert "backup" in [s.id for s in steps[:first_change]]
    assert steps[0].id == "package-tool"  # refused there when the host has no package tool
    assert all(s.destructive for s in steps if s.irreversible)


def test_skipped_releases_are_migrated_in_version_order() -> None:
    ids = [i for i in _ids(_plan("2.0.0", "3.10.0")) if i.startswith("migrate-")]
    assert ids == [
        "migrate-2.1-1",
        "migrate-2.1-2",
        "migrate-3.1-1",
        "migrate-3.5-1",
        "migrate-3.8-1",
        "migrate-3.9-1",
        "migrate-3.10-1",
    ]
    assert not [i for i in _ids(_plan("3.8.0", "3.8.1")) if i.startswith("migrate-")]


def test_targets_before_3_3_bring_mistral_and_the_enterprise_packages() -> None:
    plan = _plan("2.10.0", "3.2.0")
    ids = _ids(plan)
    assert "upgrade-packages" not in ids
    upgrade = ids.index("upgrade-packages-with-mistral")
    assert upgrade < ids.index("mistral-db-upgrade") < ids.index("mistral-db-populate")
    assert ids.index("mistral-db-populate") < ids.index("migrate-3.1-1")
    assert plan.step("mistral-db-upgrade").step.irreversible
    assert [p.step.id for p in plan.rollback][1] == "reinstall-packages-with-mistral"
    later = _plan("3.2.0", "3.4.0")
    assert "mistral-db-upgrade" not in _ids(later)
    assert [p.step.id for p in later.rollback][1] == "reinstall-packages"


def test_rollover_from_a_recent_release_uses_git_urls_and_stops_at_the_gate() -> None:
    plan = _plan("3.4.0", "3.8.1", strategy="rollover", new_host=True)
    ids = _ids(plan)
    assert "add-scope-and-secret" not in ids
    assert "install-packs-before-2-1" not in ids
    assert "new-install" in ids
    assert ids[-2:] == ["repoint", "new-check-status-after"]
    assert plan.roles == {"new": "prod/st2-new"}
    assert plan.rollback == ()
    assert not plan.auto_rollback
    assert {p.step.id for p in plan.steps if p.target == "prod/st2-new"} >= {
        "new-install",
        "load-datastore",
        "install-packs",
        "keep-audit-logs",
    }
    assert not any(p.step.destructive or p.step.rollback_needed for p in plan.steps)
    assert "needs no rollback" in RUNBOOK.strategies["rollover"].description


def test_rollover_from_before_1_5_adds_scope_and_secret_and_names_packs_before_2_1() -> None:
    variables = {"packs": "alpha,beta", "packs_repo": "https://git.example/packs.git"}
    plan = _plan("1.4.0", "2.0.0", strategy="rollover", new_host=True, new_vars=variables)
    ids = _ids(plan)
    assert ids.index("add-scope-and-secret") < ids.index("load-datastore")
    assert ids.index("new-install-with-mistral") < ids.index("new-mistral-db")
    assert "install-packs" not in ids
    assert plan.step("install-packs-before-2-1").preview.endswith(
        "packs.install packs=alpha,beta repo_url=https://git.example/packs.git subtree=true; fi"
    )


def test_rollover_needs_its_new_host_and_the_packs_to_install() -> None:
    with pytest.raises(UnknownInstance, match=r"needs a `new`"):
        _plan("3.4.0", "3.8.1", strategy="rollover")
    with pytest.raises(UserError, match=r"`pack_urls \(on its new peer\)`"):
        _plan("3.4.0", "3.8.1", strategy="rollover", new_host=True, new_vars={})


def test_secrets_are_never_decrypted_and_their_steps_keep_no_output() -> None:
    steps = {s.id: s for strategy in RUNBOOK.strategies.values() for s in strategy.steps}
    assert steps["export-datastore"].hide_output
    assert steps["load-datastore"].hide_output
    commands = [
        s.action.command
        for strategy in RUNBOOK.strategies.values()
        for s in (*strategy.steps, *strategy.rollback)
        if isinstance(s.action, ShellAction)
    ]
    assert not [c for c in commands if "--decrypt" in c]
    assert len([c for c in commands if "st2 key list -n -1 -j" in c]) == 3  # backup, export, count


def test_an_instance_needs_only_its_ssh_to_use_the_package_strategy(tmp_path: Path) -> None:
    for name in ("key", "known_hosts"):
        (tmp_path / name).write_text("x\n")
    ssh = {"host": "st2.example", "user": "bot", "key": "key", "known_hosts": "known_hosts"}
    instance = {"name": "st2-prod", "product": "st2", "ssh": ssh}
    config = {"environments": {"prod": {"instances": [instance]}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    loaded = load_config(tmp_path / "config.yaml")
    assert loaded.inventory.find("stackstorm", None, None).name == "st2-prod"
