"""Bounded worker pools: chat listeners hand work here and return at once.

Two pools keep short work (commands, votes) from queueing behind long work (upgrade runs). Each
refuses new work past its queue bound instead of growing without limit: the surface tells the
user the bot is busy.

Work handed off by a Slack request can also wait its turn behind the requests still being
answered (`Foreground`): the acknowledgement has Slack's 3 s clock on it, the planning after it
does not, and both would otherwise share Python's one interpreter lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)


class Busy(RuntimeError):
    """The pool is full; try again later."""


class Foreground:
    """The requests being answered now, which work after them lets through first.

    `wait_quiet` returns once no request has been in flight for `quiet` seconds, or once the
    work has waited `patience` seconds since it was handed off: under a steady stream of
    requests the work is late by at most that, never starved.
    """

    def __init__(self, *, quiet: float = 0.02, patience: float = 1.0) -> None:
        self.quiet, self.patience = quiet, patience
        self._changed = threading.Condition()
        self._serving = 0
        self._last_end = -quiet  # monotonic time the last request was answered

    @contextmanager
    def serving(self) -> Iterator[None]:
        with self._changed:
            self._serving += 1
        try:
            yield
        finally:
            with self._changed:
                self._serving -= 1
                self._last_end = time.monotonic()
                self._changed.notify_all()

    def wait_quiet(self, since: float) -> None:
        """Wait for a quiet moment, at most until `patience` after `since` (monotonic)."""
        deadline = since + self.patience
        with self._changed:
            while (now := time.monotonic()) < deadline:
                if self._serving:
                    self._changed.wait(deadline - now)
                elif (still := self._last_end + self.quiet - now) > 0:
                    self._changed.wait(min(still, deadline - now))
                else:
                    return


class WorkerPool:
    def __init__(
        self, name: str, *, workers: int, queue: int, foreground: Foreground | None = None
    ) -> None:
        self.name = name
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._slots = threading.BoundedSemaphore(workers + queue)
        self._foreground = foreground

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        if not self._slots.acquire(blocking=False):
            raise Busy(f"The bot's {self.name} pool is full.")
        try:
            future = self._executor.submit(self._guarded, time.monotonic(), fn, *args)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        return future

    def _guarded(self, submitted: float, fn: Callable[..., Any], *args: Any) -> Any:
        if self._foreground is not None:
            self._foreground.wait_quiet(submitted)
        try:
            return fn(*args)
        except Exception:
            log.exception("%s: unhandled error in %s", self.name, getattr(fn, "__name__", fn))
            raise

    def shutdown(self, *, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait)
