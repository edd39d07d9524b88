"""The task pool's work lets Slack's requests in flight go first, but never waits forever."""

from __future__ import annotations

import threading
import time

import pytest

from bot.workers import Busy, Foreground, WorkerPool


def _pool(foreground: Foreground, workers: int = 2, queue: int = 2) -> WorkerPool:
    return WorkerPool("tasks", workers=workers, queue=queue, foreground=foreground)


def _started(pool: WorkerPool) -> tuple[threading.Event, list[float]]:
    """Hand the pool work that records when it started."""
    started, at = threading.Event(), []

    def work() -> None:
        at.append(time.monotonic())
        started.set()

    pool.submit(work)
    return started, at


def test_work_starts_at_once_when_no_request_is_in_flight():
    pool = _pool(Foreground(quiet=0.05, patience=30))
    started, _ = _started(pool)
    assert started.wait(timeout=5)
    pool.shutdown()


def test_work_waits_for_the_requests_in_flight_then_a_quiet_moment():
    foreground = Foreground(quiet=0.05, patience=30)
    pool = _pool(foreground)
    with foreground.serving(), foreground.serving():
        started, at = _started(pool)
        assert not started.wait(timeout=0.2)
    answered = time.monotonic()
    assert started.wait(timeout=5)
    assert at[0] - answered >= foreground.quiet
    pool.shutdown()


def test_a_steady_stream_of_requests_delays_work_by_its_patience_at_most():
    foreground = Foreground(quiet=0.05, patience=0.2)
    pool = _pool(foreground)
    with foreground.serving():
        submitted = time.monotonic()
        started, at = _started(pool)
        assert started.wait(timeout=5), "the work waited past its patience"
        assert at[0] - submitted >= foreground.patience
    pool.shutdown()


def test_waiting_work_keeps_its_place_in_the_bound():
    foreground = Foreground(patience=30)
    pool = _pool(foreground, workers=1, queue=0)
    with foreground.serving():
        _started(pool)
        with pytest.raises(Busy, match="tasks pool is full"):
            pool.submit(lambda: None)
    pool.shutdown()
