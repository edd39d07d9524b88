"""Durations as operators write them in config files: `30s`, `10m`, `4h`, `1d`, or seconds."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?")


def parse_duration(value: object) -> float:
    """Seconds from `value`; raise ValueError with the accepted forms."""
    if isinstance(value, bool):
        raise ValueError("a duration such as 30s, 10m or 4h is needed")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.fullmatch(str(value).strip())
        if not match:
            raise ValueError(f"`{value}` is not a duration; write it as 30s, 10m, 4h or 1d")
        seconds = float(match[1]) * _UNITS[match[2] or "s"]
    if seconds <= 0:
        raise ValueError("a duration must be longer than zero")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
