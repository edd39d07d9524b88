"""Bounded worker pools: chat listeners hand work here and return at once.

Two pools keep short work (commands, votes) from queueing behind long work (upgrade runs). Each
refuses new work past its queue bound instead of growing without limit: the surface tells the
user the bot is busy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)


class Busy(RuntimeError):
    """The pool is full; try again later."""


class WorkerPool:
    def __init__(self, name: str, *, workers: int, queue: int) -> None:
        self.name = name
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._slots = threading.BoundedSemaphore(workers + queue)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        if not self._slots.acquire(blocking=False):
            raise Busy(f"The bot's {self.name} pool is full.")
        try:
            future = self._executor.submit(self._guarded, fn, *args)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        return future

    def _guarded(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception:
            log.exception("%s: unhandled error in %s", self.name, getattr(fn, "__name__", fn))
            raise

    def shutdown(self, *, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait)
