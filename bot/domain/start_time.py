"""Reading the start time someone typed after `at=`, in their own time zone when it has none.

Forms: `2026-12-05T02:00+01:00` or `...Z` (an exact instant); `2026-12-05T02:00` or
`2026-12-05 02:00` (wall time in the reader's zone); `sat 02:00` or `saturday 02:00` (the next
Saturday at 02:00, today if that is still ahead); `today 02:00`, `tomorrow 02:00`; and `02:00`
alone (the next 02:00). A wall time the clocks skip lands an hour later (02:30 is 03:30).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from bot.domain.errors import UserError
from bot.domain.schedule import WEEKDAYS, at_text, local_text

_CLOCK = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")
_DAY_NAMES = {
    **{name: n for n, name in enumerate(WEEKDAYS)},
    **{
        name: n
        for n, name in enumerate(
            ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        )
    },
}


class InvalidStartTime(UserError):
    """The text after `at=` is not a time the bot can read."""


class StartInPast(UserError):
    """The start time has already passed."""


def parse_start(text: str, *, now: datetime, zone: tzinfo) -> datetime:
    """The instant `text` names, in UTC; raises `InvalidStartTime` or `StartInPast`.

    `zone` is the reader's time zone, for forms that carry no offset.
    """
    words = text.strip().strip("\"'").lower().split()
    moment = _instant(words, now.astimezone(zone), zone) if words else None
    if moment is None:
        raise InvalidStartTime(
            f"`at={text}` is not a time the bot can read.",
            "Write it as `at=2026-12-05T02:00+01:00` (with its offset, or Z for UTC), or in "
            f"your own time zone ({_zone_name(zone)}) as `at=2026-12-05T02:00` or "
            "`at=sat 02:00`.",
        )
    if moment <= now:
        raise StartInPast(
            f"`at={text}` is {local_text(moment, zone)}, which has passed "
            f"(it is {local_text(now, zone)} now).",
            f"Give a time still ahead, such as `at={at_text(now + timedelta(hours=1), zone)}`.",
        )
    return moment


def _instant(words: list[str], local_now: datetime, zone: tzinfo) -> datetime | None:
    if len(words) == 1 and (clock := _clock(words[0])) is not None:
        moment = _on(local_now.date(), clock, zone)
        return moment if moment > local_now else _on(local_now.date() + timedelta(1), clock, zone)
    if len(words) == 2 and (clock := _clock(words[1])) is not None:
        day = words[0]
        if day in ("today", "tomorrow"):
            return _on(local_now.date() + timedelta(day == "tomorrow"), clock, zone)
        if day in _DAY_NAMES:
            first = local_now.date() + timedelta((_DAY_NAMES[day] - local_now.weekday()) % 7)
            moment = _on(first, clock, zone)
            return moment if moment > local_now else _on(first + timedelta(7), clock, zone)
    return _iso(" ".join(words), zone)


def _iso(text: str, zone: tzinfo) -> datetime | None:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}[t ]\d{1,2}:\d{2}(:\d{2})?(z|[+-]\d{2}:?\d{2})?", text):
        return None  # a date alone is refused: midnight is rarely what was meant
    try:
        parsed = datetime.fromisoformat(text.upper())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC)


def _clock(word: str) -> time | None:
    match = _CLOCK.fullmatch(word)
    return time(int(match[1]), int(match[2])) if match else None


def _on(day: date, clock: time, zone: tzinfo) -> datetime:
    return datetime.combine(day, clock, tzinfo=zone).astimezone(UTC)


def _zone_name(zone: tzinfo) -> str:
    return str(getattr(zone, "key", None) or zone.tzname(None) or "UTC")
