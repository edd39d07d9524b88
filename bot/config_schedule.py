"""The config's scheduling parts: windows and freezes of a policy, and the `schedule:` and
`behind_latest:` sections, validated into `bot.domain.schedule` records.

```yaml
environments:
  prod:
    policy:
      windows:
        - {name: sunday-night, days: [sun], start: "01:00", end: "05:00", tz: Europe/Berlin}
      freezes:
        - {name: year-end, start: 2026-12-20T00:00+01:00, end: 2027-01-04T00:00+01:00}
schedule:
  reminders: [24h, 1h, 10m]
  missed_start: run          # run | report: a start whose time passed while the bot was down
  missed_start_grace: 30m
behind_latest: {channel: C0123ABCD, every: 1d}
```
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from bot.domain import schedule as sched
from bot.durations import Duration

_CLOCK = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
_DAYS = {
    **{name: (n,) for n, name in enumerate(sched.WEEKDAYS)},
    "weekdays": tuple(range(5)),
    "weekend": (5, 6),
    "daily": tuple(range(7)),
}


def _clock_text(value: Any) -> Any:
    if isinstance(value, int):  # YAML 1.1 reads an unquoted 01:00 as the number 60
        raise ValueError(
            'write the time in quotes, such as "01:00" (unquoted, YAML reads a number)'
        )
    if isinstance(value, str) and not _CLOCK.fullmatch(value.strip()):
        raise ValueError(f'`{value}` is not a time of day; write it as "HH:MM", such as "01:00"')
    return value


def _zone(value: Any) -> Any:
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"`{value}` is not a time zone; use an IANA name such as Europe/Berlin or UTC"
        ) from None
    return value


def _days(value: Any) -> Any:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names:
        raise ValueError("list the days, such as [sat, sun], or write weekdays, weekend or daily")
    for name in names:
        if str(name).lower() not in _DAYS:
            known = ", ".join([*sched.WEEKDAYS, "weekdays", "weekend", "daily"])
            raise ValueError(f"`{name}` is not a day; use {known}")
    return [str(name).lower() for name in names]


def _instant(value: Any) -> Any:
    moment = value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().upper())
        except ValueError:
            moment = None
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise ValueError(
            f"`{value}` is not a date and time with its offset; write it as "
            "2026-12-20T00:00+01:00 (or Z for UTC)"
        )
    return moment


def _channel(value: Any) -> Any:
    if not isinstance(value, str) or not re.fullmatch(r"[CG][A-Z0-9]{2,}", value):
        raise ValueError(
            f"`{value}` is not a channel id; use the id, such as C0123ABCD, not a name"
        )
    return value


ClockText = Annotated[str, BeforeValidator(_clock_text)]
Instant = Annotated[datetime, BeforeValidator(_instant)]
ZoneName = Annotated[str, BeforeValidator(_zone)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WindowSpec(_Model):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    days: Annotated[list[str], BeforeValidator(_days)] = ["daily"]
    start: ClockText
    end: ClockText
    tz: ZoneName = "UTC"


class FreezeSpec(_Model):
    name: str
    start: Instant
    end: Instant
    reason: str = ""

    @model_validator(mode="after")
    def _ends_after_start(self) -> FreezeSpec:
        if self.end <= self.start:
            raise ValueError("a freeze must end after it starts")
        return self


class ScheduleSpec(_Model):
    reminders: list[Duration] = [24 * 3600.0, 3600.0]
    missed_start: sched.MissedStart = sched.MissedStart.RUN
    missed_start_grace: Duration = 30 * 60.0
    lease: Annotated[Duration, Field(ge=1.0, le=3600.0)] = 30.0


class BehindLatestSpec(_Model):
    channel: Annotated[str, BeforeValidator(_channel)]
    every: Annotated[Duration, Field(ge=60.0)] = 24 * 3600.0


def calendar(windows: list[WindowSpec], freezes: list[FreezeSpec]) -> sched.Calendar:
    return sched.Calendar(
        windows=tuple(
            sched.Window(
                name=w.name,
                days=frozenset(d for name in w.days for d in _DAYS[name]),
                start=time.fromisoformat(w.start),
                end=time.fromisoformat(w.end),
                tz=w.tz,
            )
            for w in windows
        ),
        freezes=tuple(
            sched.Freeze(name=f.name, starts=f.start, ends=f.end, reason=f.reason) for f in freezes
        ),
    )


def settings(spec: ScheduleSpec, behind: BehindLatestSpec | None) -> sched.ScheduleSettings:
    return sched.ScheduleSettings(
        reminders=tuple(sorted({timedelta(seconds=s) for s in spec.reminders}, reverse=True)),
        missed_start=spec.missed_start,
        missed_grace=timedelta(seconds=spec.missed_start_grace),
        lease=timedelta(seconds=spec.lease),
        digest_channel=behind.channel if behind else "",
        digest_every=timedelta(seconds=behind.every if behind else 24 * 3600.0),
    )


def duplicate_names(names: list[str]) -> list[str]:
    return sorted({n for n in names if names.count(n) > 1})
