"""Per-version migrations expanded in version order; steps whose output must never be kept."""

from dataclasses import replace

from adapters.memory.clock import FakeClock
from adapters.memory.docker import MemoryDockerConnector, MemoryRegistry
from adapters.memory.http import MemoryHttpCheck
from adapters.memory.shell import MemoryShell, MemoryShellConnector
from bot.domain.runbook import ShellAction, Step, expand_migrations
from bot.domain.versions import parse_version
from bot.engine.session import InstanceSession, Ports, Sessions
from bot.engine.steps import StepExecutor
from bot.runbooks import BUNDLED, load_runbook
from tests.unit.memory_world import myst_world

MIGRATIONS = {
    "1.5": ("{bin}/st2-migrate-datastore-to-include-scope-secret.py",),
    "2.1": ("{bin}/st2-migrate-datastore-scopes.py", "{bin}/st2-migrate-runners.sh"),
    "3.9": ("{bin}/st2-migrate-liveaction-executiondb --yes",),
    "3.10": ("{bin}/st2-add-task-item-state-collection",),
}


def _runbook():  # type: ignore[no-untyped-def]
    return replace(load_runbook(BUNDLED / "myst-studio.yaml"), migrations=MIGRATIONS)


STEP = Step(
    id="migrate",
    title="Run the migration of",
    timeout=60,
    action=ShellAction(command="{sudo} {migration}"),
    for_each_migration=True,
    irreversible=True,
)


def test_every_version_passed_in_version_order_skipped_ones_included():
    steps = expand_migrations(STEP, _runbook(), parse_version("2.0"), parse_version("3.10"))
    assert [s.id for s in steps] == [
        "migrate-2.1-1",
        "migrate-2.1-2",
        "migrate-3.9-1",
        "migrate-3.10-1",
    ]
    assert steps[2].title == "Run the migration of 3.9: st2-migrate-liveaction-executiondb"
    assert isinstance(steps[2].action, ShellAction)
    assert steps[2].action.command == "{sudo} {bin}/st2-migrate-liveaction-executiondb --yes"
    assert all(s.irreversible and not s.for_each_migration for s in steps)


def test_versions_outside_the_range_are_left_out():
    steps = expand_migrations(STEP, _runbook(), parse_version("2.1"), parse_version("3.9"))
    assert [s.id for s in steps] == ["migrate-3.9-1"]
    assert expand_migrations(STEP, _runbook(), parse_version("3.10"), parse_version("3.10")) == []


def test_a_step_with_secret_output_keeps_none_of_it():
    world = myst_world()
    shells = MemoryShellConnector()
    shell: MemoryShell = shells.shell("myst-prod")
    shell.on("st2 key load", stdout="| api_token | s3cr3t-value-123 | True |\nLoaded 2 keys\n")
    ports = Ports(
        ssh=shells,
        docker=MemoryDockerConnector(),
        registry=MemoryRegistry(),
        http=MemoryHttpCheck(),
        clock=FakeClock(),
    )
    step = Step(
        id="load",
        title="Load the datastore",
        timeout=60,
        hide_output=True,
        action=ShellAction(command="st2 key load /tmp/kv.json"),
    )
    lines: list[str] = []
    with InstanceSession(world.instance, ports) as session:
        outcome = StepExecutor(ports).run(
            step, {}, Sessions.of(session), on_line=lambda _s, line: lines.append(line)
        )
    assert outcome.ok
    assert outcome.result is not None
    assert "s3cr3t" not in outcome.result.stdout.text + outcome.result.stderr.text
    assert "not kept" in outcome.result.stdout.text
    assert lines == []  # nothing streamed to the chat's progress either
