"""Group commit: every caller's writes are committed before it returns, in fewer transactions than
callers, and each caller gets its own outcome."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from adapters.group_commit import GroupCommit


class Disk:
    """Transactions as lists of items, committed when the block ends, one at a time; work that
    writes a `bad` item fails its whole transaction."""

    def __init__(self, *, commit_seconds: float = 0.0) -> None:
        self.transactions: list[list[str]] = []
        self.commit_seconds = commit_seconds
        self.full = False  # the disk fails every commit: the data may or may not be on it
        self._one_at_a_time = threading.Lock()

    @contextlib.contextmanager
    def begin(self) -> Iterator[list[str]]:
        if not self._one_at_a_time.acquire(blocking=False):
            raise AssertionError("two transactions at once")
        try:
            transaction: list[str] = []
            yield transaction
            time.sleep(self.commit_seconds)
            self.transactions.append(transaction)
            if self.full:
                raise OSError("commit failed")
        finally:
            self._one_at_a_time.release()

    def written(self) -> list[str]:
        return [item for transaction in self.transactions for item in transaction]


def write(*items: str) -> Callable[[list[str]], int]:
    def work(transaction: list[str]) -> int:
        for item in items:
            if item.startswith("bad"):
                raise ValueError(f"cannot write {item}")
            transaction.append(item)
        return len(transaction)

    return work


def test_one_caller_alone_commits_its_items_in_one_transaction() -> None:
    disk = Disk()
    assert GroupCommit(disk.begin).run(write("a", "b")) == 2
    assert disk.transactions == [["a", "b"]]


def test_callers_at_once_share_transactions_and_each_returns_committed() -> None:
    disk = Disk(commit_seconds=0.005)
    group = GroupCommit(disk.begin)
    seen_on_return: list[bool] = []

    def caller(n: int) -> None:
        for step in range(10):
            item = f"run{n}-step{step}"
            group.run(write(item))
            seen_on_return.append(item in disk.written())  # durable before submit returned

    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(caller, range(20)))
    assert sorted(disk.written()) == sorted(f"run{n}-step{s}" for n in range(20) for s in range(10))
    assert all(seen_on_return)
    assert len(disk.transactions) < 200 / 2  # grouped: far fewer commits than writes


def test_a_bad_write_fails_only_its_own_caller() -> None:
    disk = Disk(commit_seconds=0.01)
    group = GroupCommit(disk.begin)
    outcomes: dict[str, str] = {}
    start = threading.Barrier(6)

    def caller(item: str) -> None:
        start.wait()
        try:
            group.run(write(item))
            outcomes[item] = "committed"
        except ValueError as exc:
            outcomes[item] = str(exc)

    items = ["good1", "good2", "bad", "good3", "good4", "good5"]
    threads = [threading.Thread(target=caller, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.pop("bad") == "cannot write bad"
    assert set(outcomes.values()) == {"committed"}
    assert sorted(disk.written()) == ["good1", "good2", "good3", "good4", "good5"]


def test_the_lead_passes_on_when_the_leader_fails() -> None:
    disk = Disk()
    group = GroupCommit(disk.begin)
    with pytest.raises(ValueError, match="bad"):
        group.run(write("bad"))
    group.run(write("after"))  # not stuck waiting for a leader that left
    assert disk.transactions == [["after"]]


def test_a_commit_that_failed_is_never_done_again() -> None:
    disk = Disk(commit_seconds=0.01)
    disk.full = True
    group = GroupCommit(disk.begin)
    errors: list[str] = []
    start = threading.Barrier(4)

    def caller(item: str) -> None:
        start.wait()
        try:
            group.run(write(item))
        except OSError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=caller, args=(f"run{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == ["commit failed"] * 4  # every caller hears of it
    assert sorted(disk.written()) == ["run0", "run1", "run2", "run3"]  # each written once


class Items:
    """Work that merges with the `Items` queued right after it; `executions` counts its calls."""

    executions = 0

    def __init__(self, *items: str) -> None:
        self.items = items

    def __call__(self, transaction: list[str]) -> None:
        Items.executions += 1
        write(*self.items)(transaction)

    def merged(self, later: object) -> Items | None:
        return Items(*self.items, *later.items) if isinstance(later, Items) else None


def queued_behind_a_leader(
    group: GroupCommit[list[str]], works: list[Callable[[list[str]], object]]
) -> dict[int, str]:
    """Run `works` from threads of their own, queued in this order while another caller's
    transaction is open; return each caller's outcome by position once all have returned."""
    release = threading.Event()
    outcomes: dict[int, str] = {}

    def lead(transaction: list[str]) -> None:
        transaction.append("first")
        release.wait(10)

    def caller(n: int, work: Callable[[list[str]], object]) -> None:
        try:
            group.run(work)
            outcomes[n] = "committed"
        except ValueError as exc:
            outcomes[n] = str(exc)

    def queued(n: int) -> None:  # the leader took its own request, and n more wait
        deadline = time.monotonic() + 10
        while not (group._leading and len(group._queue) == n):
            assert time.monotonic() < deadline, f"{n} callers never queued"
            time.sleep(0.001)

    leader = threading.Thread(target=caller, args=(-1, lead))
    leader.start()
    threads = []
    for n, work in enumerate(works):
        queued(n)
        threads.append(threading.Thread(target=caller, args=(n, work)))
        threads[-1].start()
    queued(len(works))
    release.set()
    for thread in [leader, *threads]:
        thread.join()
    return outcomes


def test_consecutive_work_that_merges_is_done_in_one_execution() -> None:
    disk = Disk()
    Items.executions = 0
    outcomes = queued_behind_a_leader(GroupCommit(disk.begin), [Items(f"s{n}") for n in range(5)])
    assert set(outcomes.values()) == {"committed"}
    assert disk.transactions == [["first"], ["s0", "s1", "s2", "s3", "s4"]]
    assert Items.executions == 1  # the five callers' items at once


def test_merged_work_keeps_queue_order_and_each_caller_hears_its_own_outcome() -> None:
    disk = Disk()
    works = [Items("a"), Items("b", "c"), write("d"), Items("e"), Items("bad"), Items("f")]
    outcomes = queued_behind_a_leader(GroupCommit(disk.begin), works)
    assert outcomes.pop(4) == "cannot write bad"
    assert set(outcomes.values()) == {"committed"}
    # The shared transaction failed on `bad`, so each was done again alone, in queue order.
    assert disk.transactions == [["first"], ["a"], ["b", "c"], ["d"], ["e"], ["f"]]
