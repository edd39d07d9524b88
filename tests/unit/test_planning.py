"""Planning against the twins: detection, registry check, refusals before anything is touched."""

import pytest

from bot.domain.errors import (
    DowngradeRefused,
    HostUnreachable,
    InvalidVersion,
    UnknownProduct,
    UnknownStrategy,
    VersionNotAvailable,
)
from bot.engine.planning import DetectionFailed, UpgradeRequest
from tests.unit.memory_world import HOME, myst_world


def _plan(world, version="3.9.1", **kw):
    return world.planner().build(UpgradeRequest(product="myst", version=version, **kw))


def test_the_plan_reads_the_current_version_from_the_running_container():
    world = myst_world()
    plan = _plan(world)
    assert (plan.from_version, plan.to_version) == ("3.9.0.3", "3.9.1")
    assert plan.instance == "myst-prod"
    assert plan.strategy == "in-place"
    assert plan.steps[0].preview == f"{HOME}/bin/pull.sh 3.9.1"
    assert plan.steps[2].preview == "test -s <backup_path> && ls -l <backup_path>"
    assert plan.rollback[0].preview == "docker tag registry.test/myst-studio:3.9.0.3 myst-studio"
    assert plan.backup_location == f"{HOME}/backup/"
    assert world.shell.commands == []  # planning runs nothing on the host


def test_the_digest_binds_the_plan_to_its_versions():
    world = myst_world()
    assert _plan(world).digest == _plan(world).digest
    assert _plan(world).digest != _plan(world, "3.10.0").digest


def test_unknown_product_names_the_known_ones():
    with pytest.raises(UnknownProduct, match=r"myst-studio \(myst\)"):
        myst_world().planner().build(UpgradeRequest(product="mist", version="3.9.1"))


@pytest.mark.parametrize("bad", ["3.9.1; rm -rf /", "$(reboot)", "latest"])
def test_a_malformed_version_never_reaches_a_host(bad):
    world = myst_world()
    with pytest.raises(InvalidVersion):
        _plan(world, bad)
    assert world.shells.connects == []
    assert world.http.requests == []


def test_a_version_missing_from_the_registry_lists_what_is_there():
    with pytest.raises(VersionNotAvailable) as caught:
        _plan(myst_world(), "3.9.2")
    assert "3.9.0.3, 3.9.1, 3.10.0" in str(caught.value)


def test_downgrade_is_refused_unless_asked():
    world = myst_world()
    world.engine.pull("registry.test/myst-studio:3.10.0")
    world.engine.tag("registry.test/myst-studio:3.10.0", "myst-studio")
    world.engine.run_container("myst-studio", "myst-studio")
    with pytest.raises(DowngradeRefused, match="--allow-downgrade"):
        _plan(world, "3.9.1")
    assert _plan(world, "3.9.1", allow_downgrade=True).downgrade


def test_the_same_version_is_nothing_to_do():
    with pytest.raises(DowngradeRefused, match="already runs"):
        _plan(myst_world(), "3.9.0.3")


def test_unknown_strategy_lists_the_strategies():
    with pytest.raises(UnknownStrategy, match="in-place"):
        _plan(myst_world(), strategy="sideways")


def test_a_stopped_instance_cannot_be_planned_blindly():
    world = myst_world()
    world.engine.remove_container("myst-studio")
    with pytest.raises(DetectionFailed, match="Could not tell which MyST Studio version"):
        _plan(world)


def test_an_unreachable_docker_engine_is_an_operational_error():
    world = myst_world()
    world.engine.set_available(False)
    with pytest.raises(DetectionFailed) as caught:
        _plan(world)
    assert "Docker" in str(caught.value)


def test_an_unreachable_host_is_refused_at_plan_time_not_after_approval():
    world = myst_world()
    world.shells.fail("myst-prod", HostUnreachable("myst@myst-prod:22 refused the connection."))
    with pytest.raises(HostUnreachable, match="refused"):
        _plan(world)
