"""The `/upgrade` grammar: the scheduling words (`at=`, `window=`, `schedule`) and mistakes."""

from __future__ import annotations

import pytest

from commands.grammar import (
    Resume,
    Rollback,
    ScheduleCancel,
    ScheduleList,
    Upgrade,
    UsageError,
    parse,
)


@pytest.mark.parametrize(
    ("text", "at"),
    [
        ("myst 3.9.1 env=prod at=2026-12-05T02:00+01:00", "2026-12-05T02:00+01:00"),
        ("myst 3.9.1 at=sat 02:00 env=prod", "sat 02:00"),
        ("myst 3.9.1 env=prod at=tomorrow 2:30", "tomorrow 2:30"),
        ("myst 3.9.1 at=2026-12-05 02:00", "2026-12-05 02:00"),
        ("myst 3.9.1 at=02:00", "02:00"),
        ("myst 3.9.1 at=2026-12-05T02:00Z --dry-run", "2026-12-05T02:00Z"),
    ],
)
def test_at_takes_a_time_or_a_day_and_a_time(text: str, at: str) -> None:
    command = parse(text)
    assert isinstance(command, Upgrade)
    assert (command.product, command.version, command.at) == ("myst", "3.9.1", at)
    assert command.scheduled


def test_a_time_after_a_full_at_stays_a_word_of_its_own() -> None:
    with pytest.raises(UsageError, match="needs a product and a version"):
        parse("myst 3.9.1 at=02:00 03:00")  # `03:00` is not part of `at=02:00`


def test_window_and_html_escaped_text() -> None:
    command = parse("myst 3.9.1 env=prod window=sunday-night")
    assert isinstance(command, Upgrade)
    assert command.window == "sunday-night"
    assert command.at is None
    assert command.scheduled
    assert not parse("myst 3.9.1").scheduled  # type: ignore[union-attr]


def test_schedule_list_and_cancel() -> None:
    assert parse("schedule list") == ScheduleList()
    assert parse("SCHEDULE LIST") == ScheduleList()
    assert parse("schedule cancel #42") == ScheduleCancel(42)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("schedule", "`/upgrade schedule` needs `list`, or `cancel` and a run number."),
        ("schedule list 3", "`/upgrade schedule` needs `list`, or `cancel` and a run number."),
        ("schedule cancel", "`/upgrade schedule` needs `list`, or `cancel` and a run number."),
        ("schedule cancel soon", "`soon` is not a run number."),
        ("myst 3.9.1 at=", "`at=` has no value."),
        ("myst 3.9.1 when=sat", "`when=` is not an option."),
    ],
)
def test_mistakes_get_one_sentence_and_the_form(text: str, problem: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse(text)
    assert caught.value.problem == problem
    assert "Use:" in caught.value.fix


def test_resume_and_rollback_name_one_run() -> None:
    assert parse("resume 7") == Resume(7)
    assert parse("rollback #7") == Rollback(7)
    with pytest.raises(UsageError, match="needs a run number"):
        parse("resume")
