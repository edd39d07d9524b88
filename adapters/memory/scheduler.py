"""`MemoryScheduler`: the scheduler's twin, on a clock the test moves.

Nothing fires by itself: `run_due()` calls the work of every job due at the clock's time, earliest
first, each once (the job is gone before its work is called), as the real scheduler would have by
then. `restart()` stands for the bot coming back after being down: it schedules from now on, so a
job whose time passed meanwhile is found late.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from bot.domain.ports import Clock, JobKind, ScheduledJob, ScheduledWork


class MemoryScheduler:
    """Implements `Scheduler`; jobs live in a dict, so they last as long as the object."""

    def __init__(self, clock: Clock, *, on_duty: bool = True) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._jobs: dict[tuple[int, JobKind, timedelta], ScheduledJob] = {}
        self._digest_every: timedelta | None = None
        self._digest_next: datetime | None = None
        self._since = clock.now() if on_duty else None
        self._work: ScheduledWork | None = None

    def start(self, work: ScheduledWork) -> None:
        """Name the work that due jobs call (the conversation)."""
        self._work = work

    def restart(self) -> None:
        """Schedule from now on, as a process that just took the lease."""
        self._since = self._clock.now()

    def stop_duty(self) -> None:
        """Stop scheduling, as a process that lost the lease."""
        self._since = None

    # -- Scheduler ------------------------------------------------------------------------------

    def schedule_start(self, run_id: int, at: datetime) -> None:
        job = ScheduledJob(run_id=run_id, kind=JobKind.START, at=at)
        with self._lock:
            self._jobs[(run_id, JobKind.START, timedelta(0))] = job

    def schedule_reminder(self, run_id: int, at: datetime, before: timedelta) -> None:
        job = ScheduledJob(run_id=run_id, kind=JobKind.REMINDER, at=at, before=before)
        with self._lock:
            self._jobs[(run_id, JobKind.REMINDER, before)] = job

    def cancel(self, run_id: int) -> int:
        with self._lock:
            mine = [key for key in self._jobs if key[0] == run_id]
            for key in mine:
                del self._jobs[key]
        return len(mine)

    def jobs(self, run_id: int | None = None) -> list[ScheduledJob]:
        with self._lock:
            chosen = [j for j in self._jobs.values() if run_id is None or j.run_id == run_id]
        return sorted(chosen, key=lambda j: (j.at, j.run_id))

    def repeat_behind_latest(self, every: timedelta) -> None:
        with self._lock:
            if self._digest_every != every:
                self._digest_every = every
                self._digest_next = self._clock.now() + every

    def on_duty_since(self) -> datetime | None:
        return self._since

    # -- driving it -----------------------------------------------------------------------------

    def run_due(self) -> int:
        """Call the work of every job due now (nothing while off duty); how many were called."""
        if self._since is None or self._work is None:
            return 0
        called = 0
        while (job := self._take_due()) is not None:
            if job.kind is JobKind.START:
                self._work.start_due(job.run_id)
            else:
                self._work.remind(job.run_id, job.before)
            called += 1
        if self._digest_due():
            self._work.behind_latest()
            called += 1
        return called

    def _take_due(self) -> ScheduledJob | None:
        now = self._clock.now()
        with self._lock:
            due = sorted(
                (key for key, job in self._jobs.items() if job.at <= now),
                key=lambda key: self._jobs[key].at,
            )
            return self._jobs.pop(due[0]) if due else None

    def _digest_due(self) -> bool:
        now = self._clock.now()
        with self._lock:
            if self._digest_every is None or self._digest_next is None or self._digest_next > now:
                return False
            # coalesced: however many intervals passed, one digest
            while self._digest_next <= now:
                self._digest_next += self._digest_every
            return True
