"""The ports: what the engine needs from the outside world, each a few methods.

Adapters in `adapters/` implement them; `adapters/memory.py` holds an in-memory twin of each, and
`tests/contract/` runs one suite per port against both. Every method raises only errors from
`bot.domain.errors`: library exceptions stop at the adapter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from bot.domain.approval import Decision, Vote
from bot.domain.conversation import ChatThread, EnvLock
from bot.domain.inventory import DockerEndpoint, Registry, SshTarget
from bot.domain.output import CommandResult, LineSink
from bot.domain.plan import Plan
from bot.domain.run import Run, RunEvent, RunState, StepResult

Progress = Callable[[int], None]


class Shell(Protocol):
    """Runs commands on one host over one open connection."""

    def run(
        self, command: str, *, timeout: float, on_line: LineSink | None = None
    ) -> CommandResult:
        """Run `command` through the host's shell and wait for it.

        Output is kept bounded (head and tail) and each line goes to `on_line` as it arrives; when
        `on_line` returns True the command is ended and the result has `stopped_early` set. A
        non-zero exit is a result, not an error. Raises `StepTimeout` (carrying the partial result;
        the command is ended on the host) and `ConnectionLost`.
        """
        ...

    def read_file(self, path: str, *, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        """Stream a file from the host in chunks. Raises `FileTransferFailed` (missing file,
        no permission) and `ConnectionLost`; the iterator must be consumed or closed."""
        ...

    def write_file(
        self, path: str, chunks: Iterable[bytes], *, progress: Progress | None = None
    ) -> int:
        """Write `chunks` to `path` on the host, atomically (a temporary name in the same folder,
        renamed when complete, removed on failure); the folder must exist. Returns the bytes
        written; `progress(done_bytes)` is called as they go. Raises `FileTransferFailed`,
        `ConnectionLost`."""
        ...

    def close(self) -> None:
        """Close the connection. Idempotent."""
        ...


class ShellConnector(Protocol):
    def connect(self, target: SshTarget) -> Shell:
        """Open a connection, or hand over one kept open since an earlier run (the shell's
        `close` then keeps it again, for `target.keep_open` seconds).

        Raises `HostUnreachable`, `HostKeyRejected`, `AuthenticationFailed`.
        """
        ...

    def close(self) -> None:
        """Close the connections kept open between runs. Idempotent."""
        ...


@dataclass(frozen=True, kw_only=True)
class ImageInfo:
    id: str
    tags: tuple[str, ...]
    created: str = ""


@dataclass(frozen=True, kw_only=True)
class ContainerInfo:
    name: str
    status: str  # "running", "exited", ...
    image_id: str
    image_tags: tuple[str, ...]  # the tags that point at the container's image now
    started_at: str = ""


class ContainerEngine(Protocol):
    """One Docker Engine."""

    def container(self, name: str) -> ContainerInfo:
        """Inspect a container. Raises `ContainerNotFound`, `ContainerEngineUnavailable`."""
        ...

    def images(self, repository: str) -> list[ImageInfo]:
        """Local images of a repository (any tag). Raises `ContainerEngineUnavailable`."""
        ...

    def pull(self, image: str) -> ImageInfo:
        """Pull `repository:tag`. Raises `ImageNotFound`, `RegistryUnavailable`,
        `ContainerEngineUnavailable`."""
        ...

    def tag(self, source: str, target: str) -> ImageInfo:
        """Point `target` (repository[:tag]) at the image `source`. Raises `ImageNotFound`,
        `ContainerEngineUnavailable`."""
        ...

    def close(self) -> None: ...


class ContainerEngineConnector(Protocol):
    def connect(self, endpoint: DockerEndpoint) -> ContainerEngine:
        """Reach the engine (and check it answers). Raises `ContainerEngineUnavailable`."""
        ...


class ImageRegistry(Protocol):
    def tags(self, registry: Registry, repository: str) -> list[str]:
        """The tags of `repository` (path inside the registry, e.g. `myst-studio`).
        Raises `RegistryUnavailable`; an unknown repository is an empty list."""
        ...


@dataclass(frozen=True, kw_only=True)
class HttpResponse:
    url: str
    status: int
    body: str  # bounded: the first bytes of the page
    elapsed: float


class HttpCheck(Protocol):
    def get(self, url: str, *, timeout: float) -> HttpResponse:
        """Read a page. Any status is a response; raises `HttpCheckFailed` when nothing answers."""
        ...


class RunStore(Protocol):
    """Where runs, their transitions and step results are kept. Each call commits."""

    def create(
        self,
        plan: Plan,
        *,
        requested_by: str,
        at: datetime,
        starts_at: datetime | None = None,
        approved_by: str | None = None,
        reason: str = "",
    ) -> Run:
        """Store a new run in state `planned` and give it its id; `starts_at` schedules it.
        With `approved_by`, the run is stored approved by that actor for `reason`, its trail
        saying planned, awaiting approval and approved, all in the one transaction."""
        ...

    def get(self, run_id: int) -> Run:
        """Raises `UnknownRun`."""
        ...

    def transition(
        self,
        run_id: int,
        expected: RunState,
        target: RunState,
        *,
        at: datetime,
        actor: str,
        reason: str = "",
        steps: Sequence[StepResult] = (),
    ) -> Run:
        """Move a run from `expected` to `target` atomically and record the event, and `steps`
        as `record_step` would, all in one transaction. Moving into a held state (running,
        rolling back) gives this store's process the claim on the run, for the store's lease;
        moving out of one ends the claim.

        Raises `InvalidTransition` when the run is no longer in `expected` or the move is not
        allowed, and `InstanceBusy` when `target` is active and another run holds the instance.
        """
        ...

    def hold(self, run_id: int, *, at: datetime) -> None:
        """Renew this process's claim on a run it executes, before its next step. Raises
        `RunTakenOver` when the claim is gone (the run was interrupted meanwhile)."""
        ...

    def renew_claims(self, *, at: datetime) -> None:
        """Renew the claims of every run this process executes (the heartbeat)."""
        ...

    def lapsed(self, *, at: datetime) -> list[Run]:
        """Runs in a held state whose claim ran out before `at`: their process died or stalled."""
        ...

    def take_over(
        self, run_id: int, expected: RunState, *, at: datetime, reason: str
    ) -> Run | None:
        """Mark a run whose claim ran out `interrupted`, as `transition` would; None when its
        claim was renewed or the run moved meanwhile (then nothing changed)."""
        ...

    def record_step(self, *results: StepResult) -> None:
        """Insert or replace the result of each (run, phase, step), all in one transaction."""
        ...

    def steps(self, run_id: int) -> list[StepResult]:
        """Step results in the order they started."""
        ...

    def events(self, run_id: int) -> list[RunEvent]: ...

    def runs(self, *, states: Sequence[RunState] = (), limit: int = 50) -> list[Run]:
        """Newest first, optionally only in the given states."""
        ...


class VoteStore(Protocol):
    """Votes on runs. At most one vote per (run, user, decision, digest); each call commits.

    The digest says what a vote approves or rejects: the plan (its digest) or a gate inside the
    running plan (`<plan digest>.<gate step id>`), so one approver may approve both.
    """

    def add_vote(self, vote: Vote) -> bool:
        """Record a vote; False if that user had already cast that decision on that run for that
        digest."""
        ...

    def remove_vote(self, run_id: int, user: str, decision: Decision, plan_digest: str) -> bool:
        """Withdraw the vote for `plan_digest`, leaving that user's votes for other digests; False
        if there was none."""
        ...

    def votes(self, run_id: int) -> list[Vote]:
        """In the order they were cast."""
        ...


class EventLog(Protocol):
    """Remembers which incoming events were handled, so retries and duplicates change nothing."""

    def first_sighting(self, key: str, at: datetime) -> bool:
        """True exactly once per key, across processes sharing the database."""
        ...


class LockStore(Protocol):
    def lock(self, lock: EnvLock) -> EnvLock:
        """Lock an environment; if it is locked already, change nothing and return that lock."""
        ...

    def unlock(self, environment: str) -> EnvLock | None:
        """Remove the lock; the removed lock, or None if there was none."""
        ...

    def locks(self) -> list[EnvLock]: ...


class ThreadStore(Protocol):
    """Where each run's conversation lives in chat."""

    def save_thread(self, thread: ChatThread) -> None:
        """Insert or replace the thread of `thread.run_id`."""
        ...

    def thread(self, run_id: int) -> ChatThread | None: ...

    def run_at(self, channel: str, ts: str) -> int | None:
        """The run whose plan or approval message is `ts` in `channel`."""
        ...


class Directory(Protocol):
    """What the chat workspace knows about people."""

    def group_members(self, group: str) -> frozenset[str]:
        """The user ids in a user group; raises `OperationalError` if it cannot be read."""
        ...

    def time_zone(self, user: str) -> str | None:
        """The user's IANA time zone (`Europe/Berlin`), or None when unknown. Never raises."""
        ...


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait (a twin advances its time instead)."""
        ...


class JobKind(StrEnum):
    START = "start"
    REMINDER = "reminder"


@dataclass(frozen=True, kw_only=True)
class ScheduledJob:
    """A job of one run as the scheduler keeps it: only the run's id and when."""

    run_id: int
    kind: JobKind
    at: datetime
    before: timedelta = timedelta(0)  # a reminder: how long before the start


class ScheduledWork(Protocol):
    """What the scheduler calls when a job is due (the conversation implements it)."""

    def start_due(self, run_id: int) -> None:
        """The run's start time has come (or passed while no process was scheduling)."""
        ...

    def remind(self, run_id: int, before: timedelta) -> None:
        """The run starts in `before`."""
        ...

    def behind_latest(self) -> None:
        """Time for the periodic digest of instances behind their newest version."""
        ...


class Scheduler(Protocol):
    """Timed work kept across restarts: runs' starts and reminders, and the behind-latest digest.

    Jobs carry run ids only: what a run is and whether it may start is read when a job is due.
    A job due while no process was scheduling runs as soon as one does (it is never dropped, and
    never run twice by the scheduler: the work decides from `on_duty_since` whether it is late).
    Only one process schedules at a time. Raises `StoreUnavailable` when its database fails.
    """

    def schedule_start(self, run_id: int, at: datetime) -> None:
        """Call `start_due(run_id)` at `at`, replacing the run's start job if it had one."""
        ...

    def schedule_reminder(self, run_id: int, at: datetime, before: timedelta) -> None:
        """Call `remind(run_id, before)` at `at`, replacing that reminder if it was set."""
        ...

    def cancel(self, run_id: int) -> int:
        """Remove every job of the run; how many there were."""
        ...

    def jobs(self, run_id: int | None = None) -> list[ScheduledJob]:
        """The jobs (of one run, or all), earliest first."""
        ...

    def repeat_behind_latest(self, every: timedelta) -> None:
        """Call `behind_latest()` every `every`, counting from the first time this was asked;
        asking again with the same interval changes nothing."""
        ...

    def on_duty_since(self) -> datetime | None:
        """Since when this process schedules (holds the lease); None while it does not."""
        ...
