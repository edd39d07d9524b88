"""Windows, freezes and late starts: the pure rules of when a scheduled run may start, DST included.

Europe/Berlin changes clocks on 2026-03-29 (02:00 CET becomes 03:00 CEST) and on 2026-10-25
(03:00 CEST becomes 02:00 CET). Sundays in 2026: 2026-03-29, 2026-10-25, 2026-12-06, ...
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.domain.schedule import (
    Calendar,
    Freeze,
    Lateness,
    MissedStart,
    ScheduleSettings,
    Slot,
    StartNotAllowed,
    UnknownWindow,
    Window,
    at_text,
    lateness,
    local_text,
    reminder_times,
    zone_named,
)

BERLIN = ZoneInfo("Europe/Berlin")
SUN = frozenset({6})
SUNDAY_NIGHT = Window(name="sunday-night", days=SUN, start=time(1), end=time(5), tz="Europe/Berlin")
LATE_EVENING = Window(name="late", days=frozenset({4}), start=time(22), end=time(2), tz="UTC")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


def test_a_window_opens_on_its_days_in_its_own_zone() -> None:
    slot = next(SUNDAY_NIGHT.slots(utc(2026, 12, 2)))
    assert slot == Slot(opens=utc(2026, 12, 6, 0), closes=utc(2026, 12, 6, 4), window="x")
    assert slot.window == "sunday-night"
    summer = next(SUNDAY_NIGHT.slots(utc(2026, 7, 1)))
    assert (summer.opens, summer.closes) == (utc(2026, 7, 4, 23), utc(2026, 7, 5, 3))


def test_the_night_the_clocks_go_back_the_window_is_an_hour_longer() -> None:
    slot = next(SUNDAY_NIGHT.slots(utc(2026, 10, 24)))
    assert slot.opens == berlin(2026, 10, 25, 1)  # 01:00 CEST
    assert slot.closes == berlin(2026, 10, 25, 5)  # 05:00 CET
    assert slot.closes - slot.opens == timedelta(hours=5)


def test_the_night_the_clocks_go_forward_the_window_is_an_hour_shorter() -> None:
    slot = next(SUNDAY_NIGHT.slots(utc(2026, 3, 28)))
    assert slot.closes - slot.opens == timedelta(hours=3)
    assert slot.opens == utc(2026, 3, 29, 0)  # 01:00 CET
    assert slot.closes == utc(2026, 3, 29, 3)  # 05:00 CEST


def test_a_window_in_the_skipped_hour_falls_an_hour_later_that_night() -> None:
    gap = Window(name="gap", days=SUN, start=time(2), end=time(2, 30), tz="Europe/Berlin")
    slot = next(gap.slots(utc(2026, 3, 28)))
    assert slot.opens == berlin(2026, 3, 29, 3)  # 02:00 does not exist that night: 03:00 CEST
    assert slot.closes - slot.opens == timedelta(minutes=30)


def test_a_window_across_midnight_ends_the_next_day() -> None:
    friday_evening = utc(2026, 12, 4, 23)
    calendar = Calendar(windows=(LATE_EVENING,))
    slot = calendar.slot_at(friday_evening)
    assert slot is not None
    assert (slot.opens, slot.closes) == (utc(2026, 12, 4, 22), utc(2026, 12, 5, 2))
    assert calendar.allows(utc(2026, 12, 5, 1, 59))
    assert not calendar.allows(utc(2026, 12, 5, 2))  # the end is not inside


def test_without_windows_any_time_is_allowed_but_never_a_freeze() -> None:
    freeze = Freeze(name="year-end", starts=utc(2026, 12, 20), ends=utc(2027, 1, 4))
    calendar = Calendar(freezes=(freeze,))
    assert calendar.allows(utc(2026, 12, 19, 23, 59))
    assert not calendar.allows(utc(2026, 12, 20))
    assert calendar.allows(utc(2027, 1, 4))
    assert calendar.next_start(utc(2026, 12, 24)) == utc(2027, 1, 4)


def test_the_next_start_is_the_next_window_opening_outside_the_freezes() -> None:
    freeze = Freeze(name="release", starts=utc(2026, 12, 5), ends=utc(2026, 12, 6, 1, 30))
    calendar = Calendar(windows=(SUNDAY_NIGHT, LATE_EVENING), freezes=(freeze,))
    # Friday 4 Dec 22:00 UTC opens first
    assert calendar.next_start(utc(2026, 12, 2)) == utc(2026, 12, 4, 22)
    # inside the freeze: Sunday's window is open from 00:00 UTC, the freeze ends at 01:30
    assert calendar.next_start(utc(2026, 12, 5, 3)) == utc(2026, 12, 6, 1, 30)
    # asked for one window only
    assert calendar.next_start(utc(2026, 12, 2), "sunday-night") == utc(2026, 12, 6, 1, 30)
    # in a window now: now
    assert calendar.next_start(utc(2026, 12, 6, 2)) == utc(2026, 12, 6, 2)


def test_overlapping_freezes_are_waited_out_one_after_the_other() -> None:
    first = Freeze(name="a", starts=utc(2026, 12, 1), ends=utc(2026, 12, 10))
    second = Freeze(name="b", starts=utc(2026, 12, 9), ends=utc(2026, 12, 20))
    calendar = Calendar(freezes=(second, first))
    assert calendar.next_start(utc(2026, 12, 2)) == utc(2026, 12, 20)


def test_a_freeze_over_every_opening_within_the_horizon_gives_none() -> None:
    forever = Freeze(name="forever", starts=utc(2026, 1, 1), ends=utc(2030, 1, 1))
    calendar = Calendar(windows=(SUNDAY_NIGHT,), freezes=(forever,))
    assert calendar.next_start(utc(2026, 12, 1)) is None
    with pytest.raises(StartNotAllowed) as caught:
        calendar.check(utc(2026, 12, 6, 2), environment="prod", zone=UTC)
    assert "No start is allowed within a year" in caught.value.fix


def test_a_start_outside_the_windows_is_refused_with_the_next_slot_to_copy() -> None:
    calendar = Calendar(windows=(SUNDAY_NIGHT,))
    with pytest.raises(StartNotAllowed) as caught:
        calendar.check(berlin(2026, 12, 5, 2), environment="prod", zone=BERLIN)
    assert caught.value.problem == (
        "Sat 2026-12-05 02:00 CET is outside every maintenance window "
        "(sunday-night (sun 01:00-05:00 Europe/Berlin)) of prod."
    )
    assert caught.value.fix == (
        "The next allowed start is Sun 2026-12-06 01:00 CET: ask with "
        "`at=2026-12-06T01:00+01:00` or `window=sunday-night`."
    )
    calendar.check(berlin(2026, 12, 6, 4, 59), environment="prod", zone=BERLIN)


def test_a_start_in_a_freeze_names_the_freeze_and_its_reason() -> None:
    freeze = Freeze(
        name="year-end", starts=utc(2026, 12, 20), ends=utc(2027, 1, 4), reason="trading peak"
    )
    calendar = Calendar(freezes=(freeze,))
    with pytest.raises(StartNotAllowed) as caught:
        calendar.check(utc(2026, 12, 24, 10), environment="prod", zone=UTC)
    assert "change freeze `year-end` of prod" in caught.value.problem
    assert "trading peak" in caught.value.problem
    assert "`at=2027-01-04T00:00+00:00`" in caught.value.fix


def test_window_names_are_checked() -> None:
    calendar = Calendar(windows=(SUNDAY_NIGHT,))
    with pytest.raises(UnknownWindow) as caught:
        calendar.check(utc(2026, 12, 6, 2), environment="prod", zone=UTC, window="weekend")
    assert caught.value.problem == "prod has no maintenance window `weekend`."
    assert "sunday-night (sun 01:00-05:00 Europe/Berlin)" in caught.value.fix
    with pytest.raises(UnknownWindow, match="no maintenance windows"):
        Calendar().window("weekend", "prod")


def test_a_start_in_another_window_than_the_one_named_is_refused() -> None:
    calendar = Calendar(windows=(SUNDAY_NIGHT, LATE_EVENING))
    with pytest.raises(StartNotAllowed) as caught:
        calendar.check(utc(2026, 12, 4, 23), environment="prod", zone=UTC, window="sunday-night")
    assert "outside the window sunday-night" in caught.value.problem


def test_lateness_on_duty_late_and_missed() -> None:
    start = utc(2026, 12, 6, 1)
    run = ScheduleSettings(missed_grace=timedelta(minutes=30))
    report = ScheduleSettings(missed_start=MissedStart.REPORT, missed_grace=timedelta(minutes=30))
    before, after = start - timedelta(hours=1), start + timedelta(minutes=5)
    assert lateness(start, start + timedelta(seconds=1), before, run) is Lateness.ON_TIME
    assert lateness(start, start + timedelta(seconds=1), before, report) is Lateness.ON_TIME
    # the bot came back after the start time: late
    assert lateness(start, after, after, run) is Lateness.LATE
    assert lateness(start, after, after, report) is Lateness.MISSED
    assert lateness(start, after, None, run) is Lateness.LATE
    # beyond the grace it never starts
    beyond = start + timedelta(minutes=31)
    assert lateness(start, beyond, before, run) is Lateness.MISSED
    assert lateness(start, beyond, beyond, run) is Lateness.MISSED


def test_reminders_still_ahead_earliest_first() -> None:
    start = utc(2026, 12, 6, 1)
    offsets = (timedelta(hours=24), timedelta(hours=1), timedelta(minutes=10))
    assert reminder_times(start, offsets, utc(2026, 12, 1)) == [
        (timedelta(hours=24), utc(2026, 12, 5, 1)),
        (timedelta(hours=1), utc(2026, 12, 6, 0)),
        (timedelta(minutes=10), utc(2026, 12, 6, 0, 50)),
    ]
    assert reminder_times(start, offsets, utc(2026, 12, 6, 0, 30)) == [
        (timedelta(minutes=10), utc(2026, 12, 6, 0, 50))
    ]


def test_times_are_written_for_the_reader_and_to_be_copied() -> None:
    moment = utc(2026, 12, 6, 0)
    assert local_text(moment, BERLIN) == "Sun 2026-12-06 01:00 CET"
    assert at_text(moment, BERLIN) == "2026-12-06T01:00+01:00"
    assert local_text(moment, UTC) == "Sun 2026-12-06 00:00 UTC"
    assert zone_named("Europe/Berlin") == BERLIN
    assert zone_named("Mars/Olympus") is UTC
    assert zone_named(None) is UTC
