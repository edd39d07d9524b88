"""Group commit: write transactions from many threads committed together, each caller returning
once its own work is durable.

The first caller to arrive leads: it does everything queued so far, its own included, in one
transaction, wakes the others whose work went with it, and hands the lead to the first caller
that queued meanwhile. So no caller waits for more than the commit before its own and its own,
and a fleet's twenty runs make a few commits a step between them instead of twenty, each of
which had to take the database's single write lock (docs/benchmarks.md).

Work done together behaves as if done one after the other, in the order it queued. Work with a
`merged(later)` method is merged with the work queued right after it when that method gives one
work doing both (its result is then each caller's), so that a run of step records becomes one
statement with all their rows. If a piece of work fails (a transition that lost a race, a
record of an unknown run), nothing of the shared transaction is committed and each caller's work
is done again in a transaction of its own, so that each gets its own outcome: one run's trouble
never fails another run's step. A commit that fails is never done again: whether it took effect
is unknown, and each caller hears so.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

Connection = TypeVar("Connection")
Result = TypeVar("Result")
Work = Callable[[Connection], Any]


class _Request(Generic[Connection]):
    def __init__(self, work: Callable[[Connection], Any]) -> None:
        self.work = work
        self.woken = threading.Event()
        self.leads = False
        self.committed = False
        self.result: Any = None
        self.error: BaseException | None = None


class GroupCommit(Generic[Connection]):
    """`begin()` opens a transaction (a context manager giving its connection, committing when
    the block ends); work must not call `run` again (it would wait for itself)."""

    def __init__(self, begin: Callable[[], AbstractContextManager[Connection]]) -> None:
        self._begin = begin
        self._lock = threading.Lock()
        self._queue: list[_Request[Connection]] = []
        self._leading = False

    def run(self, work: Callable[[Connection], Result]) -> Result:
        """Do `work(connection)` in a transaction; return its result once committed, or raise
        what the work (or the commit) raised."""
        request = _Request(work)
        with self._lock:
            self._queue.append(request)
            follows, self._leading = self._leading, True
        if follows:
            request.woken.wait()
        if request.leads or not follows:
            self._lead(request)
        if not request.committed:
            raise request.error or RuntimeError("the write was not committed")
        result: Result = request.result
        return result

    def _lead(self, mine: _Request[Connection]) -> None:
        with self._lock:
            batch, self._queue = self._queue, []
        try:
            if not self._attempt(batch) and len(batch) > 1:
                for request in batch:  # again one by one: each gets its own outcome
                    request.error = None
                    self._attempt([request])
        finally:
            with self._lock:
                if self._queue:
                    successor = self._queue[0]
                    successor.leads = True
                    successor.woken.set()
                else:
                    self._leading = False
            for request in batch:
                if request is not mine:
                    request.woken.set()

    def _attempt(self, batch: list[_Request[Connection]]) -> bool:
        """Do the batch's work in one transaction. False if a piece of work raised, so that
        nothing was committed; else each request has its outcome: committed, or the commit's
        error, which is never retried (whether that commit took effect is unknown)."""
        results: list[Any] = []
        try:
            with self._begin() as connection:
                for work, callers in _merged(batch):
                    results.extend([work(connection)] * callers)
        except BaseException as exc:  # handed to the caller whose work it was
            if len(results) < len(batch):  # this work raised, or no transaction began
                batch[len(results)].error = exc
                return False
            for request in batch:
                request.error = exc
            return True
        for request, result in zip(batch, results, strict=True):
            request.result, request.committed = result, True
        return True


def _merged(batch: list[_Request[Connection]]) -> list[tuple[Work[Connection], int]]:
    """The batch's work in order, each run of work that merges as one, with how many callers'
    work each one does."""
    works: list[tuple[Work[Connection], int]] = []
    for request in batch:
        merge = getattr(works[-1][0], "merged", None) if works else None
        combined = merge(request.work) if merge is not None else None
        if combined is None:
            works.append((request.work, 1))
        else:
            works[-1] = (combined, works[-1][1] + 1)
    return works
