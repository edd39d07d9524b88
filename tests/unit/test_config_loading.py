"""The config file loads into the inventory, and every mistake is named with its fix."""

from pathlib import Path

import pytest

from bot.config import load_config
from bot.domain.errors import ConfigError, UnknownInstance

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "example-config.yaml"


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """The shipped example, with its key files pointing at files that exist."""
    for name in ("id_ed25519", "known_hosts"):
        (tmp_path / name).write_text("placeholder\n")
    text = EXAMPLE.read_text().replace("/etc/upgrade-bot/ssh/", f"{tmp_path}/")
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def _problems(path: Path, environ=None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={} if environ is None else environ)
    return str(caught.value)


ENV = {"MYST_REGISTRY_PASSWORD": "s3cret"}


def test_the_example_config_loads(config_file):
    config = load_config(config_file, environ=ENV)
    prod = config.inventory.environment("prod")
    assert prod.policy.approvals_required == 2
    instance = config.inventory.find("myst-studio", "prod", None)
    assert instance.product == "myst-studio"  # the alias `myst` resolved too
    assert instance.ssh is not None
    assert instance.ssh.connect_timeout == 10
    assert instance.registry is not None
    assert instance.registry.password == "s3cret"
    assert "s3cret" not in repr(instance)  # secrets stay out of logs
    assert instance.repository == "myst-studio"


def test_keep_open_may_be_zero_but_not_negative(config_file):
    config = load_config(config_file, environ=ENV)
    kept = config.inventory.find("myst-studio", "nonprod", "myst-test").ssh
    assert kept is not None
    assert kept.keep_open == 60
    config_file.write_text(config_file.read_text().replace("keep_open: 60s", "keep_open: 0s"))
    never = load_config(config_file, environ=ENV).inventory.find("myst-studio", "nonprod", None)
    assert never.ssh is not None
    assert never.ssh.keep_open == 0
    config_file.write_text(config_file.read_text().replace("keep_open: 0s", "keep_open: -5s"))
    text = _problems(config_file, ENV)
    assert "keep_open" in text
    assert "30s, 10m, 4h or 1d" in text


def test_the_default_environment_is_used_when_none_is_named(config_file):
    config = load_config(config_file, environ=ENV)
    assert config.inventory.find("myst-studio", None, None).environment == "nonprod"


def test_a_missing_password_variable_is_named(config_file):
    text = _problems(config_file)
    assert "names `MYST_REGISTRY_PASSWORD`, which is not set" in text


def test_unknown_product_lists_the_known_ones(config_file):
    config_file.write_text(config_file.read_text().replace("product: myst ", "product: mist "))
    text = _problems(config_file, ENV)
    assert "environments.nonprod.instances[0].product" in text
    assert "There is no product `mist`" in text
    assert "myst-studio (myst)" in text


def test_plain_tcp_docker_off_this_machine_is_refused(config_file):
    text = config_file.read_text()
    start = text.index("          tls: {ca")
    end = text.index("        registry:", start)
    config_file.write_text(text[:start] + text[end:])
    assert "needs `tls:`" in _problems(config_file, ENV)


def test_a_missing_known_hosts_file_is_named_with_how_to_create_it(config_file, tmp_path):
    (tmp_path / "known_hosts").unlink()
    text = _problems(config_file, ENV)
    assert "known_hosts" in text
    assert "ssh-keyscan" in text


def test_values_the_runbook_needs_must_be_given(config_file):
    config_file.write_text(
        config_file.read_text().replace(
            "        console_url: https://myst.example.com/console/\n", ""
        )
    )
    text = _problems(config_file, ENV)
    assert "environments.prod.instances[0]" in text
    assert "gives no value for `console_url`" in text


def test_ssh_or_local_is_required(config_file):
    text = config_file.read_text()
    config_file.write_text(
        text.replace(
            "        ssh:\n          host: myst-prod.internal\n",
            "        sh:\n          host: myst-prod.internal\n",
        )
    )
    problems = _problems(config_file, ENV)
    assert "Did you mean `ssh`?" in problems


def test_ambiguous_environment_asks_which(config_file):
    config_file.write_text(config_file.read_text().replace("default_environment: nonprod\n", ""))
    config = load_config(config_file, environ=ENV)
    with pytest.raises(UnknownInstance) as caught:
        config.inventory.find("myst-studio", None, None)
    assert "env=<name>" in str(caught.value)


SCHEDULING = """
  sunday:
    policy:
      approvers: [U0123ABCD]
      windows:
        - {name: sunday-night, days: [sun], start: "01:00", end: "05:00", tz: Europe/Berlin}
        - {name: weeknights, days: weekdays, start: "22:00", end: "02:00"}
      freezes:
        - {name: year-end, start: 2026-12-20T00:00+01:00, end: 2027-01-04T00:00+01:00,
           reason: trading peak}
    instances: []
"""


def _with(config_file, environment=SCHEDULING, **replaced):
    """The example with the `sunday` environment added and some text replaced."""
    text = config_file.read_text() + environment
    for old, new in replaced.values():
        assert old in text
        text = text.replace(old, new)
    config_file.write_text(text)
    return config_file


def test_windows_freezes_and_the_schedule_load(config_file):
    config = load_config(_with(config_file), environ=ENV)
    calendar = config.inventory.environment("sunday").policy.calendar
    sunday, weeknights = calendar.windows
    assert (sunday.days, str(sunday.start), str(sunday.end), sunday.tz) == (
        frozenset({6}),
        "01:00:00",
        "05:00:00",
        "Europe/Berlin",
    )
    assert weeknights.days == frozenset(range(5))
    assert weeknights.tz == "UTC"
    [freeze] = calendar.freezes
    assert freeze.reason == "trading peak"
    assert freeze.starts.isoformat() == "2026-12-20T00:00:00+01:00"
    schedule = config.schedule
    assert [r.total_seconds() for r in schedule.reminders] == [86400, 3600, 600]
    assert schedule.missed_start.value == "run"
    assert schedule.missed_grace.total_seconds() == 1800
    assert schedule.lease.total_seconds() == 30
    assert (schedule.digest_channel, schedule.digest_every.total_seconds()) == ("C0123WXYZ", 86400)
    assert [w.name for w in config.inventory.environment("prod").policy.calendar.windows] == [
        "sunday-night"
    ]
    assert config.inventory.environment("nonprod").policy.calendar.windows == ()


WEEKNIGHTS = '- {name: weeknights, days: weekdays, start: "22:00", end: "02:00"}'


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ('{name: w, days: [sun], start: 1:00, end: "05:00"}', "write the time in quotes"),
        ('{name: w, days: [sun], start: "1:00", end: "05:00"}', "is not a time of day"),
        ('{name: w, days: [someday], start: "01:00", end: "05:00"}', "`someday` is not a day"),
        ('{name: w, start: "01:00", end: "05:00", tz: Europe/Berln}', "is not a time zone"),
    ],
)
def test_window_mistakes_are_named_with_the_fix(config_file, entry, problem):
    found = _problems(_with(config_file, window=(WEEKNIGHTS, f"- {entry}")), ENV)
    assert "environments.sunday.policy.windows[1]" in found
    assert problem in found


def test_freeze_schedule_and_digest_mistakes_are_named(config_file):
    _with(
        config_file,
        freeze=(
            "end: 2027-01-04T00:00+01:00,\n           reason: trading",
            "end: 2026-12-01T00:00+01:00,\n           reason: trading",
        ),
        missed=("missed_start: run", "missed_start: later"),
        channel=("channel: C0123WXYZ", "channel: upgrades"),
    )
    found = _problems(config_file, ENV)
    assert "freezes[0]: a freeze must end after it starts" in found
    assert "schedule.missed_start" in found
    assert "`upgrades` is not a channel id" in found


def test_two_windows_of_one_name_are_refused(config_file):
    _with(config_file, name=("name: weeknights", "name: sunday-night"))
    assert "has two entries named `sunday-night`" in _problems(config_file, ENV)
