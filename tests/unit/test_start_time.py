"""`at=` as people write it: exact instants, wall times in their own zone, and weekdays."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from bot.domain.start_time import InvalidStartTime, StartInPast, parse_start

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)  # Wednesday, 10:00 in Berlin


def at(text: str, now: datetime = NOW, zone: ZoneInfo = BERLIN) -> datetime:
    return parse_start(text, now=now, zone=zone)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-05T02:00+01:00", datetime(2026, 12, 5, 1, 0, tzinfo=UTC)),
        ("2026-12-05T02:00Z", datetime(2026, 12, 5, 2, 0, tzinfo=UTC)),
        ("2026-12-05t02:00z", datetime(2026, 12, 5, 2, 0, tzinfo=UTC)),
        ("2026-12-05T02:00", datetime(2026, 12, 5, 1, 0, tzinfo=UTC)),  # Berlin wall time
        ("2026-12-05 02:00", datetime(2026, 12, 5, 1, 0, tzinfo=UTC)),
        ("2027-07-05T02:00", datetime(2027, 7, 5, 0, 0, tzinfo=UTC)),  # summer: CEST
        ("sat 02:00", datetime(2026, 12, 5, 1, 0, tzinfo=UTC)),
        ("Saturday 02:00", datetime(2026, 12, 5, 1, 0, tzinfo=UTC)),
        ("wed 11:00", datetime(2026, 12, 2, 10, 0, tzinfo=UTC)),  # today, still ahead
        ("wed 09:00", datetime(2026, 12, 9, 8, 0, tzinfo=UTC)),  # today's passed: next week
        ("tomorrow 02:00", datetime(2026, 12, 3, 1, 0, tzinfo=UTC)),
        ("today 23:30", datetime(2026, 12, 2, 22, 30, tzinfo=UTC)),
        ("23:30", datetime(2026, 12, 2, 22, 30, tzinfo=UTC)),
        ("09:30", datetime(2026, 12, 3, 8, 30, tzinfo=UTC)),  # passed today: tomorrow
        ('"sat 02:00"', datetime(2026, 12, 5, 1, 0, tzinfo=UTC)),
    ],
)
def test_each_form_names_one_instant(text: str, expected: datetime) -> None:
    assert at(text) == expected
    assert at(text).tzinfo is UTC


def test_a_weekday_across_a_clock_change_keeps_its_wall_time() -> None:
    saturday_before = datetime(2026, 10, 24, 12, 0, tzinfo=UTC)
    assert at("sun 02:30", now=saturday_before) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    # a week later is CET: 02:30 is 01:30 UTC, not 00:30 + 7 days
    sunday_after = datetime(2026, 10, 25, 12, 0, tzinfo=UTC)
    assert at("sun 02:30", now=sunday_after) == datetime(2026, 11, 1, 1, 30, tzinfo=UTC)


def test_a_time_the_clocks_skip_lands_an_hour_later() -> None:
    before = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    moment = at("sun 02:30", now=before)
    assert moment == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST
    assert moment.astimezone(BERLIN).hour == 3


@pytest.mark.parametrize(
    "text", ["someday", "sat", "25:00", "sat 2pm", "2026-12-05", "2026-13-05T02:00", "", "noon"]
)
def test_what_cannot_be_read_is_one_sentence_with_the_forms(text: str) -> None:
    with pytest.raises(InvalidStartTime) as caught:
        at(text)
    assert caught.value.problem == f"`at={text}` is not a time the bot can read."
    assert "2026-12-05T02:00+01:00" in caught.value.fix
    assert "Europe/Berlin" in caught.value.fix


def test_a_time_that_has_passed_says_what_time_it_is() -> None:
    with pytest.raises(StartInPast) as caught:
        at("2026-12-01T02:00+01:00")
    assert caught.value.problem == (
        "`at=2026-12-01T02:00+01:00` is Tue 2026-12-01 02:00 CET, which has passed "
        "(it is Wed 2026-12-02 10:00 CET now)."
    )
    assert caught.value.fix == "Give a time still ahead, such as `at=2026-12-02T11:00+01:00`."
    with pytest.raises(StartInPast):
        at("today 09:00")


def test_a_reader_without_a_zone_reads_utc() -> None:
    assert parse_start("sat 02:00", now=NOW, zone=UTC) == datetime(2026, 12, 5, 2, tzinfo=UTC)
