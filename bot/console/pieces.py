"""The pieces the terminal renderings are made of: untrusted text made safe and cut visibly,
names, times (UTC: a terminal has no reader's zone), states, and tables.

Untrusted text always goes in as `Text`, never as markup, and without control characters, so a
log line can neither inject markup nor move the cursor or recolour the terminal.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from rich import box
from rich.console import Group, JustifyMethod, RenderableType
from rich.table import Table
from rich.text import Text

from bot.domain.plan import Plan
from bot.domain.run import Phase, Run, RunState
from commands.views import count

LINE_CHARS = 500  # one output line; longer ones are cut so one line cannot bury the rest
NAME_CHARS = 200
PLAN_STEPS = 200
LIST_RUNS = 200
LIST_ITEMS = 50
LOG_LINES = 40
MAX_EXCERPT = 200  # a step's excerpt whatever was asked: more would scroll past unread
EARLIER_ERRORS = 10
FAILED_TAIL_LINES = 20
ERROR_MARK = "!! "  # prefixes a start-up log line that matches an error pattern
PLAIN_MARK = "   "
TRUNCATED = " [… truncated]"

# C0 controls but tab and newline, DEL and C1: ESC and CSI would drive the terminal.
_CONTROL = dict.fromkeys([*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F, *range(0x80, 0xA0)])
MENTION = re.compile(r"<@([A-Za-z0-9][A-Za-z0-9._-]*)>")

_GOOD = frozenset({RunState.SUCCEEDED, RunState.APPROVED})
_BAD = frozenset({RunState.FAILED, RunState.ROLLBACK_FAILED, RunState.REJECTED})
_WARN = frozenset({RunState.ROLLED_BACK, RunState.INTERRUPTED, RunState.AWAITING_APPROVAL})


# -- text ---------------------------------------------------------------------------------------


def clean(text: str) -> str:
    return text.translate(_CONTROL)


def clip(text: str, limit: int = LINE_CHARS) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - len(TRUNCATED)] + TRUNCATED


def line(text: str, limit: int = NAME_CHARS) -> str:
    """Untrusted text on one line, cut visibly."""
    window = text[: 4 * limit]  # a megabyte of text costs no more than a line
    shown = " ".join(clean(window).split())
    if len(window) < len(text) and len(shown) <= limit:
        shown += TRUNCATED
    return clip(shown, limit)


def user(name: str) -> str:
    return "@" + line(name, 80)


def users(names: Iterable[str], limit: int = 20) -> str:
    chosen = list(names)
    if not chosen:
        return "nobody"
    shown = ", ".join(user(n) for n in chosen[:limit])
    return f"{shown} and {len(chosen) - limit} more" if len(chosen) > limit else shown


def when(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # records are written in UTC
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def more(number: int, noun: str) -> Text:
    return Text(f"… {count(number, 'more ' + noun)}", style="dim italic")


def state_text(state: RunState) -> Text:
    style = "green" if state in _GOOD else "red" if state in _BAD else ""
    style = style or ("yellow" if state in _WARN else "cyan")
    return Text(state.value.replace("_", " "), style=style)


def versions(plan: Plan) -> str:
    return f"{line(plan.from_version, 80)} → {line(plan.to_version, 80)}"


def run_title(run: Run) -> str:
    plan = run.plan
    return f"{line(plan.product_title)} {versions(plan)} on {line(plan.instance_key)}"


def facts(rows: Sequence[tuple[str, str | Text]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for label, value in rows:
        grid.add_row(label, value)
    return grid


_NARROW = frozenset({"", "#", "Took", "Updated"})  # columns that never wrap
_RIGHT = frozenset({"#", "Took"})


def table(
    columns: Sequence[str], rows: Iterable[Sequence[RenderableType]], *, total: int, noun: str
) -> RenderableType:
    """A table of `rows`; when `total` is more than the rows, a line says how many are left."""
    grid = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name in columns:
        justify: JustifyMethod = "right" if name in _RIGHT else "left"
        grid.add_column(name, justify=justify, no_wrap=name in _NARROW, overflow="fold")
    for row in rows:
        grid.add_row(*row)
    return grid if total <= grid.row_count else Group(grid, more(total - grid.row_count, noun))


def numbered(phase: Phase, number: int) -> str:
    return f"R{number}" if phase is Phase.ROLLBACK else str(number)


def output_lines(lines: Sequence[str], *, marks: Sequence[str] | None = None) -> Text:
    """Output lines as they were printed (cleaned, each cut), optionally with a margin mark."""
    text = Text(no_wrap=False, overflow="fold")
    for i, raw in enumerate(lines):
        mark = marks[i] if marks else ""
        shown = clip(clean(raw))
        style = "bold red" if mark == ERROR_MARK else ""
        text.append(f"{mark}{shown}\n", style=style)
    text.rstrip()
    return text
