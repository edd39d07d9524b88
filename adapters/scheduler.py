"""`ApsScheduler`: the `Scheduler` port on APScheduler 3, its jobs in the bot's own database.

Jobs live in `scheduler_jobs` (APScheduler's `SQLAlchemyJobStore`) and carry run ids only (and a
reminder its offset); their functions are named by module path, so a job written by one process
is run by another after a restart. What a job does is looked up when it runs: the process's one
`ScheduledWork`, named at `start`.

Only the process holding the lease (`SqlLease`) schedules: every process starts its scheduler
paused (so it can still add and remove jobs, and list them), and a thread takes or renews the
lease every third of its length, resuming the scheduler while held and pausing it when lost. On
taking the lease, `on_duty` runs first (the conversation sets every scheduled run's jobs again).

Misfires are explicit: `misfire_grace_time=None`, so a job whose time passed while no process was
scheduling is never dropped silently; the work decides, from `on_duty_since`, whether it is late
(`bot.domain.schedule.lateness`). `coalesce=True` and `max_instances=1`: a job never runs twice at
once, and a repeating job that missed several times runs once. A job runs once from the scheduler;
that its effect happens once is the work's business (run state moves are compare-and-set).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.exc import SQLAlchemyError

from adapters.clock import SystemClock
from adapters.scheduler_lease import SqlLease
from adapters.sql_engine import create_store_engine, describe, masked
from adapters.sql_models import SCHEDULER_JOBS_TABLE
from bot.domain.errors import StoreUnavailable
from bot.domain.ports import Clock, JobKind, ScheduledJob, ScheduledWork

log = logging.getLogger(__name__)

RUNS, LOCAL = "runs", "local"  # job stores: the database, and this process's own
DIGEST_JOB = "behind-latest"
JOB_WORKERS = 4

_work: ScheduledWork | None = None  # the process's one scheduler's work (see `start`)
_work_lock = threading.Lock()


def _current() -> ScheduledWork:
    if _work is None:
        raise RuntimeError("a scheduled job ran, but no scheduler of this process is started")
    return _work


# What the stored jobs name, by module path: their arguments are ids and seconds, nothing more.


def start_due(run_id: int) -> None:
    _current().start_due(run_id)


def remind(run_id: int, seconds: int) -> None:
    _current().remind(run_id, timedelta(seconds=seconds))


def behind_latest() -> None:
    _current().behind_latest()


class _SharedJobStore(SQLAlchemyJobStore):  # type: ignore[misc]
    """The job table is shared by processes: a job another process removed meanwhile (a run
    cancelled there) is simply gone, not an error that would stop this scheduler's loop."""

    def remove_job(self, job_id: str) -> None:
        try:
            super().remove_job(job_id)
        except JobLookupError:
            log.info("job %s was already removed", job_id)

    def update_job(self, job: Any) -> None:
        try:
            super().update_job(job)
        except JobLookupError:
            log.info("job %s was removed while it ran", job.id)


def _start_id(run_id: int) -> str:
    return f"run-{run_id}-start"


def _reminder_id(run_id: int, before: timedelta) -> str:
    return f"run-{run_id}-remind-{int(before.total_seconds())}"


class ApsScheduler:
    """Implements `Scheduler` with an APScheduler 3 `BackgroundScheduler` on the bot's database.

    One per process (the stored jobs find their work through this module). Raises
    `StoreUnavailable` when the database fails.
    """

    def __init__(
        self,
        url: str,
        *,
        lease: timedelta = timedelta(seconds=30),
        clock: Clock | None = None,
        holder: str | None = None,
    ) -> None:
        self._engine = create_store_engine(url)
        self._clock = clock or SystemClock()
        self.lease = SqlLease(self._engine, clock=self._clock, length=lease, holder=holder)
        self._renew_every = lease.total_seconds() / 3
        self._scheduler = BackgroundScheduler(
            jobstores={
                RUNS: _SharedJobStore(engine=self._engine, tablename=SCHEDULER_JOBS_TABLE),
                LOCAL: MemoryJobStore(),
            },
            executors={"default": ThreadPoolExecutor(JOB_WORKERS)},
            job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1},
            timezone=UTC,
        )
        self._since: datetime | None = None
        self._asked: datetime | None = None  # when the database last answered `lease.hold()`
        self._on_duty: Callable[[], object] = lambda: None
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None

    # -- life -----------------------------------------------------------------------------------

    def start(self, work: ScheduledWork, *, on_duty: Callable[[], object] | None = None) -> None:
        """Start paused, name the work due jobs call, and begin trying for the lease."""
        global _work
        with _work_lock:
            if _work is not None:
                raise RuntimeError("this process already runs a scheduler")
            _work = work
        self._on_duty = on_duty or (lambda: None)
        with self._failures("starting the scheduler"):
            self._scheduler.start(paused=True)
        self._keeper = threading.Thread(
            target=self._keep_lease, name="scheduler-lease", daemon=True
        )
        self._keeper.start()

    def every(self, seconds: float, job: Callable[[], object], name: str) -> None:
        """Run `job` every `seconds` while this process schedules (not kept across restarts)."""
        self._scheduler.add_job(
            job, "interval", seconds=seconds, id=name, jobstore=LOCAL, replace_existing=True
        )

    def shutdown(self) -> None:
        """Stop scheduling and give the lease up for the next process. Idempotent."""
        global _work
        self._stop.set()
        if self._keeper is not None:
            self._keeper.join(timeout=10)
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        try:
            self.lease.release()
        except StoreUnavailable:
            log.warning("could not release the scheduling lease; it runs out by itself")
        self._since = self._asked = None
        with _work_lock:
            _work = None
        self._engine.dispose()

    def _keep_lease(self) -> None:
        while not self._stop.is_set():
            try:
                held = self.lease.hold()
                self._asked = self._clock.now()
            except StoreUnavailable as exc:
                log.warning("scheduling lease not renewed: %s", exc)
                held = None
            except Exception:  # a bug: logged, and tried again rather than never again
                log.exception("asking for the scheduling lease failed")
                held = None
            if held is not None and self._since is None:
                log.warning("scheduling: this process (%s) holds the lease", self.lease.holder)
                self._since = held
                try:
                    self._on_duty()
                except Exception:
                    log.exception("setting the scheduled runs' jobs again failed")
                self._scheduler.resume()
            elif held is None and self._since is not None:
                log.warning("scheduling lease lost: this process stops scheduling")
                self._scheduler.pause()
                self._since = None
            elif held is not None:
                self._scheduler.wakeup()  # see jobs other processes added meanwhile
            self._stop.wait(self._renew_every)

    # -- Scheduler ------------------------------------------------------------------------------

    def schedule_start(self, run_id: int, at: datetime) -> None:
        self._add(f"{__name__}:start_due", _start_id(run_id), at, (run_id,))

    def schedule_reminder(self, run_id: int, at: datetime, before: timedelta) -> None:
        seconds = int(before.total_seconds())
        self._add(f"{__name__}:remind", _reminder_id(run_id, before), at, (run_id, seconds))

    def cancel(self, run_id: int) -> int:
        prefix = f"run-{run_id}-"
        removed = 0
        with self._failures(f"cancelling the jobs of run #{run_id}"):
            for job in self._scheduler.get_jobs(jobstore=RUNS):
                if job.id.startswith(prefix):
                    try:
                        self._scheduler.remove_job(job.id, jobstore=RUNS)
                        removed += 1
                    except JobLookupError:
                        continue  # ran or was removed meanwhile
        return removed

    def jobs(self, run_id: int | None = None) -> list[ScheduledJob]:
        with self._failures("listing scheduled jobs"):
            stored = self._scheduler.get_jobs(jobstore=RUNS)
        found = [job for job in (_job(j.id, j.next_run_time) for j in stored) if job is not None]
        chosen = [j for j in found if run_id is None or j.run_id == run_id]
        return sorted(chosen, key=lambda j: (j.at, j.run_id))

    def repeat_behind_latest(self, every: timedelta) -> None:
        with self._failures("scheduling the behind-latest digest"):
            existing = self._scheduler.get_job(DIGEST_JOB, jobstore=RUNS)
            if existing is not None and existing.trigger.interval == every:
                return
            self._scheduler.add_job(
                f"{__name__}:behind_latest",
                IntervalTrigger(seconds=every.total_seconds(), timezone=UTC),
                id=DIGEST_JOB,
                jobstore=RUNS,
                replace_existing=True,
            )

    def on_duty_since(self) -> datetime | None:
        return self._since

    def lease_asked(self) -> datetime | None:
        """When this process last heard from the database whether it holds the lease; None
        before the first answer and once shut down. Its readiness check reads this."""
        return self._asked

    # -- internals ------------------------------------------------------------------------------

    def _add(self, func: str, job_id: str, at: datetime, args: tuple[int, ...]) -> None:
        with self._failures(f"scheduling {job_id}"):
            self._scheduler.add_job(
                func,
                DateTrigger(run_date=at.astimezone(UTC), timezone=UTC),
                id=job_id,
                args=args,
                jobstore=RUNS,
                replace_existing=True,
            )

    @contextmanager
    def _failures(self, doing: str) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            raise StoreUnavailable(
                f"The scheduler's database ({masked(self._engine.url)}) failed while {doing}: "
                f"{describe(exc, self._engine.url)}"
            ) from exc


def _job(job_id: str, at: datetime | None) -> ScheduledJob | None:
    """The run job an APScheduler job id names (`run-12-start`, `run-12-remind-3600`)."""
    parts = job_id.split("-")
    if at is None or len(parts) < 3 or parts[0] != "run" or not parts[1].isdigit():
        return None
    run_id = int(parts[1])
    if parts[2:] == ["start"]:
        return ScheduledJob(run_id=run_id, kind=JobKind.START, at=at)
    if len(parts) == 4 and parts[2] == "remind" and parts[3].isdigit():
        before = timedelta(seconds=int(parts[3]))
        return ScheduledJob(run_id=run_id, kind=JobKind.REMINDER, at=at, before=before)
    return None
