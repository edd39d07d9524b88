"""Which run the current thread works on, for the log lines written meanwhile (`bot.logs`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

current_run: ContextVar[int | None] = ContextVar("current_run", default=None)


@contextlib.contextmanager
def working_on(run_id: int) -> Iterator[None]:
    """Within the block, log records of this thread carry `run_id`."""
    token = current_run.set(run_id)
    try:
        yield
    finally:
        current_run.reset(token)
