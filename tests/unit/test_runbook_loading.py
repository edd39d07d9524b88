"""Runbooks are data: the bundled one loads, and a bad one is refused with file, line and fix."""

from pathlib import Path

import pytest

from bot.domain.errors import ConfigError
from bot.domain.runbook import ShellAction, StepRole
from bot.runbooks import BUNDLED, load_runbook, load_runbooks

MYST = BUNDLED / "myst-studio.yaml"


def _variant(tmp_path: Path, old: str, new: str, count: int = 1) -> Path:
    text = MYST.read_text()
    assert old in text, f"the bundled runbook no longer contains {old!r}"
    path = tmp_path / "myst-studio.yaml"
    path.write_text(text.replace(old, new, count))
    return path


def _problems(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_runbook(path)
    return str(caught.value)


def test_the_bundled_myst_runbook_carries_the_in_place_procedure():
    runbook = load_runbook(MYST)
    steps = runbook.strategy("in-place").steps
    assert [s.id for s in steps] == [
        "pull",
        "backup",
        "check-backup",
        "stop",
        "start",
        "startup-log",
        "console",
    ]
    assert "myst" in runbook.aliases
    assert {c.name for c in steps[1].captures} == {"backup_path"}
    assert [s.id for s in steps if s.destructive] == ["stop", "start"]
    log_step = steps[5]
    assert log_step.role is StepRole.STARTUP_LOG
    assert isinstance(log_step.action, ShellAction)
    assert log_step.action.follow is not None
    assert log_step.action.follow.max_lines > 0  # a bounded excerpt, never an endless follow
    assert runbook.strategy("in-place").rollback


def test_catalog_finds_products_by_alias():
    catalog = load_runbooks(BUNDLED)
    assert catalog.find("MYST").product == "myst-studio"


def test_unknown_key_names_line_and_suggests_the_spelling(tmp_path):
    path = _variant(tmp_path, "        destructive: true", "        destructiv: true")
    text = _problems(path)
    assert f"{path}:" in text
    assert "strategies.in-place.steps[3].destructiv" in text
    assert "Did you mean `destructive`?" in text


def test_bad_duration_says_how_to_write_one(tmp_path):
    text = _problems(_variant(tmp_path, "timeout: 15m", "timeout: soon"))
    assert "`soon` is not a duration; write it as 30s, 10m, 4h or 1d" in text


def test_a_destructive_step_before_any_backup_is_refused(tmp_path):
    path = _variant(tmp_path, "      - id: stop\n", "      - id: stop\n", 1)
    text = path.read_text()
    # move the backup step after stop: the stop step no longer has a backup before it
    backup = text[text.index("      - id: backup") : text.index("      - id: check-backup")]
    text = text.replace(backup, "").replace("      - id: start\n", backup + "      - id: start\n")
    text = text.replace("test -s {backup_path} && ls -l {backup_path}", "true")
    path.write_text(text)
    problems = _problems(path)
    assert "step `stop` is destructive but no step before it captures the backup" in problems


def test_a_capture_without_its_named_group_is_refused(tmp_path):
    path = _variant(tmp_path, "'Backed up to (?P<backup_path>\\S+)'", "'Backed up to (\\S+)'")
    assert "has no group named `backup_path`" in _problems(path)


def test_using_a_value_before_it_is_captured_is_refused(tmp_path):
    path = _variant(
        tmp_path,
        'shell: "{home}/bin/pull.sh {version}"',
        'shell: "{home}/bin/pull.sh {version} {backup_path}"',
    )
    assert "uses `{backup_path}` before a step captures it" in _problems(path)


def test_malformed_placeholder_is_refused(tmp_path):
    path = _variant(tmp_path, "{home}/bin/stop.sh", "{home.x}/bin/stop.sh")
    assert "is not a plain placeholder" in _problems(path)


def test_invalid_yaml_points_at_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("product: x\ntitle: [unclosed\n")
    assert f"{path}:" in _problems(path)
    assert "is not valid YAML" in _problems(path)


def test_duplicate_keys_are_refused(tmp_path):
    path = _variant(tmp_path, "title: MyST Studio\n", "title: MyST Studio\ntitle: Other\n")
    assert "is set twice" in _problems(path)


def test_undoes_must_name_steps_that_change_their_host(tmp_path):
    path = _variant(
        tmp_path, "        undoes: [stop, start]  #", "        undoes: [stop, check-backup]  #"
    )
    text = _problems(path)
    assert "strategies.in-place.rollback[1].undoes" in text
    assert "`check-backup`, which is not a step of this strategy marked" in text


def test_undoes_belongs_to_rollback_steps(tmp_path):
    path = _variant(
        tmp_path,
        '        shell: "{home}/bin/stop.sh"\n',
        '        shell: "{home}/bin/stop.sh"\n        undoes: [pull]\n',
    )
    assert "strategies.in-place.steps[3].undoes: only applies to rollback steps" in _problems(path)
