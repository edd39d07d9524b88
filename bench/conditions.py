"""The conditions a benchmark ran under, printed first: figures mean little without them."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime

BUSY_LOAD = 0.5  # a one-minute load average above this means something else was running


def print_conditions() -> None:
    """Date, cores, kernel, Python and the load average; a warning if the machine is busy."""
    one, five, _ = os.getloadavg()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"{when}; {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}; load average {one:.2f} (1 min), {five:.2f} (5 min)"
    )
    if one > BUSY_LOAD:
        print("  the machine is busy with other work: expect slower and noisier figures")
    print()


def print_load_after() -> None:
    """The load average again at the end: a run takes minutes, and others may have started."""
    one, five, _ = os.getloadavg()
    print(f"\nload average at the end: {one:.2f} (1 min), {five:.2f} (5 min)")
    if one > BUSY_LOAD:
        print("  the machine was busy with other work: expect slower and noisier figures")
