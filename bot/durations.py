"""Durations as operators write them in config files: `30s`, `10m`, `4h`, `1d`, or seconds."""

from __future__ import annotations

import re
from functools import partial
from typing import Annotated

from pydantic import BeforeValidator

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?")


def parse_duration(value: object, *, zero: bool = False) -> float:
    """Seconds from `value`; raise ValueError with the accepted forms. Zero only with `zero`."""
    if isinstance(value, bool):
        raise ValueError("a duration such as 30s, 10m or 4h is needed")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.fullmatch(str(value).strip())
        if not match:
            raise ValueError(f"`{value}` is not a duration; write it as 30s, 10m, 4h or 1d")
        seconds = float(match[1]) * _UNITS[match[2] or "s"]
    if seconds < 0 or (seconds == 0 and not zero):
        raise ValueError(f"a duration must be {'zero or more' if zero else 'longer than zero'}")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
DurationOrZero = Annotated[float, BeforeValidator(partial(parse_duration, zero=True))]
