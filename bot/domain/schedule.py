"""When a scheduled run may start: maintenance windows, change freezes, and what to do when late.

A window is a weekly slot in its own time zone (`sun 01:00-05:00 Europe/Berlin`), so it follows
that zone's daylight saving time: on the night the clocks go back it is an hour longer, on the
night they go forward an hour shorter. A wall time the clocks skip is read with the offset in
force before the change, so it falls an hour later that night (02:30 is 03:30). A freeze is a
range of instants. Without windows any time is allowed; a freeze
is never. All instants here are aware; slots and answers are given in UTC.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.domain.errors import UserError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HORIZON = timedelta(days=400)  # how far ahead the next allowed start is looked for


class UnknownWindow(UserError):
    """`window=` names no maintenance window of the environment."""


class StartNotAllowed(UserError):
    """The start lies outside every window of the environment, or inside a change freeze."""


def zone_named(name: str | None) -> tzinfo:
    """The time zone of an IANA name (as Slack's users.info gives it); UTC when unknown."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def local_text(moment: datetime, zone: tzinfo) -> str:
    """`Sun 2026-12-06 01:00 CET`: an instant as a person in `zone` reads it."""
    local = moment.astimezone(zone)
    return f"{local:%a %Y-%m-%d %H:%M} {local.tzname() or ''}".rstrip()


def at_text(moment: datetime, zone: tzinfo) -> str:
    """`2026-12-06T01:00+01:00`: an instant written so that `at=` reads it back exactly."""
    return moment.astimezone(zone).isoformat(timespec="minutes")


@dataclass(frozen=True, kw_only=True, order=True)
class Slot:
    """One opening of a window, from `opens` up to (not including) `closes`, in UTC."""

    opens: datetime
    closes: datetime
    window: str = field(compare=False)

    def holds(self, moment: datetime) -> bool:
        return self.opens <= moment < self.closes


@dataclass(frozen=True, kw_only=True)
class Window:
    """A weekly maintenance window; `end` at or before `start` means it ends the next day."""

    name: str
    days: frozenset[int] = frozenset(range(7))  # 0 is Monday, as `date.weekday()`
    start: time
    end: time
    tz: str = "UTC"

    def describe(self) -> str:
        """`sun 01:00-05:00 Europe/Berlin`."""
        days = "daily" if len(self.days) == 7 else ",".join(WEEKDAYS[d] for d in sorted(self.days))
        return f"{days} {self.start:%H:%M}-{self.end:%H:%M} {self.tz}"

    def slots(self, after: datetime) -> Iterator[Slot]:
        """The openings that close after `after`, in order, without end (callers bound it)."""
        if not self.days:
            return
        zone = ZoneInfo(self.tz)
        # a window across midnight may have opened the evening before
        day = after.astimezone(zone).date() - timedelta(days=1)
        while True:
            if day.weekday() in self.days:
                slot = self._slot(day, zone)
                if slot.closes > after and slot.opens < slot.closes:
                    yield slot
            day += timedelta(days=1)

    def _slot(self, day: date, zone: ZoneInfo) -> Slot:
        # Wall-clock times become instants through the zone: a time the clocks skip takes the
        # offset in force before the change (fold=0), so it lands an hour later.
        opens = datetime.combine(day, self.start, tzinfo=zone)
        end_day = day + timedelta(days=1) if self.end <= self.start else day
        closes = datetime.combine(end_day, self.end, tzinfo=zone)
        return Slot(opens=opens.astimezone(UTC), closes=closes.astimezone(UTC), window=self.name)


@dataclass(frozen=True, kw_only=True)
class Freeze:
    """A change freeze: no run starts from `starts` up to (not including) `ends`."""

    name: str
    starts: datetime
    ends: datetime
    reason: str = ""

    def holds(self, moment: datetime) -> bool:
        return self.starts <= moment < self.ends


@dataclass(frozen=True, kw_only=True)
class Calendar:
    """When changes may start in one environment: inside one of its windows (at any time when it
    has none), and never inside one of its freezes."""

    windows: tuple[Window, ...] = ()
    freezes: tuple[Freeze, ...] = ()

    def window(self, name: str, environment: str) -> Window:
        for window in self.windows:
            if window.name == name:
                return window
        if not self.windows:
            raise UnknownWindow(
                f"{environment} has no maintenance windows, so `window={name}` names none.",
                "Leave out window= and give the time with at=.",
            )
        known = ", ".join(f"{w.name} ({w.describe()})" for w in self.windows)
        raise UnknownWindow(
            f"{environment} has no maintenance window `{name}`.", f"Its windows: {known}."
        )

    def slot_at(self, moment: datetime, window: str | None = None) -> Slot | None:
        """The window opening that holds `moment` (of `window` only, if named)."""
        for each in self.windows:
            if window is not None and each.name != window:
                continue
            first = next(each.slots(moment), None)
            if first is not None and first.holds(moment):
                return first
        return None

    def freeze_at(self, moment: datetime) -> Freeze | None:
        return next((f for f in self.freezes if f.holds(moment)), None)

    def allows(self, moment: datetime, window: str | None = None) -> bool:
        in_window = not self.windows or self.slot_at(moment, window) is not None
        return in_window and self.freeze_at(moment) is None

    def next_start(self, after: datetime, window: str | None = None) -> datetime | None:
        """The first instant from `after` on at which a run may start (in `window`, if named);
        None if there is none within `HORIZON`."""
        until = after + HORIZON
        if not self.windows:
            return self._thaw(after, until)
        chosen = [w for w in self.windows if window is None or w.name == window]
        for slot in _merged(chosen, after, until):
            moment = self._thaw(max(slot.opens, after), slot.closes)
            if moment is not None:
                return moment
        return None

    def check(
        self, moment: datetime, *, environment: str, zone: tzinfo, window: str | None = None
    ) -> None:
        """Raise `StartNotAllowed` (with the next allowed start as the fix) unless a run may
        start at `moment`; times in the sentence are in the reader's `zone`."""
        if window is not None:
            self.window(window, environment)
        freeze = self.freeze_at(moment)
        if freeze is not None:
            why = f": {freeze.reason}" if freeze.reason else ""
            problem = (
                f"{local_text(moment, zone)} falls in the change freeze `{freeze.name}` of "
                f"{environment} ({local_text(freeze.starts, zone)} to "
                f"{local_text(freeze.ends, zone)}{why})."
            )
        elif self.windows and self.slot_at(moment, window) is None:
            names = [w for w in self.windows if window is None or w.name == window]
            listed = ", ".join(f"{w.name} ({w.describe()})" for w in names)
            which = f"the window {listed}" if window else f"every maintenance window ({listed})"
            problem = f"{local_text(moment, zone)} is outside {which} of {environment}."
        else:
            return
        raise StartNotAllowed(problem, self.suggestion(moment, zone=zone, window=window))

    def suggestion(self, after: datetime, *, zone: tzinfo, window: str | None = None) -> str:
        """The fix for a refused start: the next allowed one, written to be copied."""
        upcoming = self.next_start(after, window)
        if upcoming is None:
            return "No start is allowed within a year: check the windows and freezes in the config."
        slot = self.slot_at(upcoming, window)
        by_window = f" or `window={slot.window}`" if slot is not None else ""
        return (
            f"The next allowed start is {local_text(upcoming, zone)}: "
            f"ask with `at={at_text(upcoming, zone)}`{by_window}."
        )

    def _thaw(self, moment: datetime, until: datetime) -> datetime | None:
        """`moment`, or the end of the freezes that hold it, if that is before `until`."""
        for _ in range(len(self.freezes) + 1):
            freeze = self.freeze_at(moment)
            if freeze is None:
                return moment if moment < until else None
            moment = freeze.ends
        return None


def _merged(windows: list[Window], after: datetime, until: datetime) -> Iterator[Slot]:
    """The openings of all `windows` in order of opening, up to `until`."""
    streams = [w.slots(after) for w in windows]
    heads = {i: slot for i, s in enumerate(streams) if (slot := next(s, None)) is not None}
    while heads:
        index = min(heads, key=lambda i: heads[i])
        slot = heads[index]
        if slot.opens >= until:
            return
        yield slot
        following = next(streams[index], None)
        if following is None:
            del heads[index]
        else:
            heads[index] = following


class MissedStart(StrEnum):
    """What happens to a start whose time passed while no bot process was scheduling."""

    RUN = "run"  # start late, if within the grace
    REPORT = "report"  # do not start; say so in the run's thread


class Lateness(StrEnum):
    ON_TIME = "on_time"
    LATE = "late"  # the bot was away at the start time; the policy lets it start now
    MISSED = "missed"  # too late, or the policy is to report: it does not start


@dataclass(frozen=True, kw_only=True)
class ScheduleSettings:
    """The config's `schedule:` and `behind_latest:` sections."""

    reminders: tuple[timedelta, ...] = (timedelta(hours=24), timedelta(hours=1))
    missed_start: MissedStart = MissedStart.RUN
    missed_grace: timedelta = timedelta(minutes=30)
    lease: timedelta = timedelta(seconds=30)  # how long a scheduling process holds its lease
    digest_channel: str = ""  # where the behind-latest digest goes; "" for none
    digest_every: timedelta = timedelta(days=1)


def lateness(
    starts_at: datetime, now: datetime, on_duty_since: datetime | None, settings: ScheduleSettings
) -> Lateness:
    """Whether a start found due at `now` goes ahead.

    A start is missed when it is found more than the grace after its time, or when no process was
    scheduling at its time (this one began after it, `on_duty_since`) and the policy is `report`.
    """
    if now - starts_at > settings.missed_grace:
        return Lateness.MISSED
    if on_duty_since is not None and on_duty_since <= starts_at:
        return Lateness.ON_TIME
    return Lateness.LATE if settings.missed_start is MissedStart.RUN else Lateness.MISSED


def reminder_times(
    starts_at: datetime, offsets: tuple[timedelta, ...], now: datetime
) -> list[tuple[timedelta, datetime]]:
    """`(offset, when)` of each reminder still ahead, earliest first."""
    due = {(offset, starts_at - offset) for offset in offsets if starts_at - offset > now}
    return sorted(due, key=lambda pair: pair[1])
