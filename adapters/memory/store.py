"""`MemoryRunStore`: the run store's in-memory twin, for unit tests and dry runs.

Like `SqlRunStore` it also implements `VoteStore`, `EventLog`, `LockStore` and `ThreadStore`.
`another_process()` gives a view of the same data as a second bot process sees it: its own
holder of claims on runs, as two processes sharing one database.
"""

from __future__ import annotations

import copy
import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from adapters.run_store_rules import (
    as_utc,
    creation_events,
    instance_busy,
    moved_meanwhile,
    require_limit,
    unknown_run,
)
from bot.domain.approval import Decision, Vote
from bot.domain.conversation import ChatThread, EnvLock
from bot.domain.errors import RunTakenOver
from bot.domain.plan import Plan
from bot.domain.run import (
    ACTIVE_STATES,
    HELD_STATES,
    Phase,
    Run,
    RunEvent,
    RunState,
    StepResult,
    check_transition,
)


@dataclass(frozen=True)
class _Stored:
    result: StepResult
    order: int  # when the step was first recorded: breaks ties between equal start times


class MemoryRunStore:
    """Keeps runs in dicts behind one lock; behaves and refuses like `SqlRunStore`.

    The records are frozen, so handing out the stored objects themselves is safe.
    """

    def __init__(self, *, holder: str = "memory", claim: timedelta = timedelta(seconds=30)) -> None:
        self.holder = holder
        self._claim = claim
        self._claims: dict[int, tuple[str, datetime]] = {}  # run id -> (holder, held until)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._order = itertools.count()
        self._runs: dict[int, Run] = {}
        self._events: dict[int, list[RunEvent]] = {}
        self._steps: dict[tuple[int, Phase, str], _Stored] = {}
        self._votes: dict[int, list[Vote]] = {}  # per run, in the order they were added
        self._seen: dict[str, datetime] = {}
        self._env_locks: dict[str, EnvLock] = {}
        self._threads: dict[int, ChatThread] = {}

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
        at = as_utc(at)
        with self._lock:
            run = Run(
                id=next(self._ids),
                plan=plan,
                state=RunState.PLANNED if approved_by is None else RunState.APPROVED,
                requested_by=requested_by,
                created_at=at,
                updated_at=at,
                starts_at=as_utc(starts_at) if starts_at is not None else None,
            )
            self._runs[run.id] = run
            self._events[run.id] = creation_events(
                run.id,
                plan,
                requested_by=requested_by,
                at=at,
                approved_by=approved_by,
                reason=reason,
            )
            return run

    def another_process(self, holder: str) -> MemoryRunStore:
        """The same runs, seen by another process: claims are made in the name of `holder`."""
        other = copy.copy(self)  # shares every dict and the lock
        other.holder = holder
        return other

    def get(self, run_id: int) -> Run:
        with self._lock:
            return self._run(run_id)

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
        at = as_utc(at)
        with self._lock:
            run = self._run(run_id)
            if run.state != expected:
                raise moved_meanwhile(run_id, expected, run.state)
            moved = self._move(run, target, at=at, actor=actor, reason=reason)
            self._write_steps(steps)
            return moved

    def hold(self, run_id: int, *, at: datetime) -> None:
        with self._lock:
            run, claim = self._run(run_id), self._claims.get(run_id)
            if run.state not in HELD_STATES or claim is None or claim[0] != self.holder:
                raise RunTakenOver(
                    f"Run #{run_id} is no longer held by this bot process ({self.holder})."
                )
            self._claims[run_id] = (self.holder, as_utc(at) + self._claim)

    def renew_claims(self, *, at: datetime) -> None:
        with self._lock:
            for run_id, (holder, _) in list(self._claims.items()):
                if holder == self.holder:
                    self._claims[run_id] = (holder, as_utc(at) + self._claim)

    def lapsed(self, *, at: datetime) -> list[Run]:
        with self._lock:
            return [
                r for r in sorted(self._runs.values(), key=lambda r: r.id) if self._lapsed(r, at)
            ]

    def take_over(
        self, run_id: int, expected: RunState, *, at: datetime, reason: str
    ) -> Run | None:
        at = as_utc(at)
        with self._lock:
            run = self._run(run_id)
            if run.state != expected or not self._lapsed(run, at):
                return None
            actor = f"bot ({self.holder})"
            return self._move(run, RunState.INTERRUPTED, at=at, actor=actor, reason=reason)

    def _lapsed(self, run: Run, at: datetime) -> bool:
        claim = self._claims.get(run.id)
        return run.state in HELD_STATES and (claim is None or claim[1] < as_utc(at))

    def _move(self, run: Run, target: RunState, *, at: datetime, actor: str, reason: str) -> Run:
        """The transition itself; the caller holds the lock and has checked the state."""
        run_id, expected = run.id, run.state
        check_transition(run_id, expected, target)
        if target in ACTIVE_STATES:
            self._check_instance_free(run)
        if target in HELD_STATES:
            self._claims[run_id] = (self.holder, at + self._claim)
        else:
            self._claims.pop(run_id, None)
        moved = replace(run, state=target, updated_at=at)
        self._runs[run_id] = moved
        self._events[run_id].append(
            RunEvent(
                run_id=run_id,
                at=at,
                from_state=expected,
                to_state=target,
                actor=actor,
                reason=reason,
            )
        )
        return moved

    def record_step(self, *results: StepResult) -> None:
        with self._lock:
            self._write_steps(results)

    def _write_steps(self, results: Sequence[StepResult]) -> None:
        """All or nothing: every result is checked before any is written. The caller holds the
        lock."""
        copies = [
            replace(
                result,
                started_at=as_utc(result.started_at),
                finished_at=as_utc(result.finished_at) if result.finished_at else None,
                captures=dict(result.captures),  # a copy: the caller's dict may change later
            )
            for result in results
        ]
        for result in copies:
            self._run(result.run_id)
        for result in copies:
            key = (result.run_id, result.phase, result.step_id)
            earlier = self._steps.get(key)
            order = earlier.order if earlier else next(self._order)
            self._steps[key] = _Stored(result, order)

    def steps(self, run_id: int) -> list[StepResult]:
        with self._lock:
            self._run(run_id)
            mine = [s for (rid, _, _), s in self._steps.items() if rid == run_id]
        mine.sort(key=lambda s: (s.result.started_at, s.order))
        return [s.result for s in mine]

    def events(self, run_id: int) -> list[RunEvent]:
        with self._lock:
            self._run(run_id)
            return list(self._events[run_id])

    def runs(self, *, states: Sequence[RunState] = (), limit: int = 50) -> list[Run]:
        require_limit(limit)
        with self._lock:
            newest_first = sorted(self._runs.values(), key=lambda r: r.id, reverse=True)
        wanted = set(states)
        return [r for r in newest_first if not wanted or r.state in wanted][:limit]

    def add_vote(self, vote: Vote) -> bool:
        vote = replace(vote, at=as_utc(vote.at))
        with self._lock:
            self._run(vote.run_id)
            cast = self._votes.setdefault(vote.run_id, [])
            if any(_vote_key(v) == _vote_key(vote) for v in cast):
                return False
            cast.append(vote)
            return True

    def remove_vote(self, run_id: int, user: str, decision: Decision, plan_digest: str) -> bool:
        with self._lock:
            self._run(run_id)
            cast = self._votes.get(run_id, [])
            kept = [v for v in cast if _vote_key(v) != (user, decision, plan_digest)]
            self._votes[run_id] = kept
            return len(kept) < len(cast)

    def votes(self, run_id: int) -> list[Vote]:
        with self._lock:
            self._run(run_id)
            cast = list(self._votes.get(run_id, []))
        # Stable: votes cast at the same instant keep the order they were added in, as in SQL.
        return sorted(cast, key=lambda v: v.at)

    def first_sighting(self, key: str, at: datetime) -> bool:
        at = as_utc(at)
        with self._lock:
            if key in self._seen:
                return False
            self._seen[key] = at
            return True

    def lock(self, lock: EnvLock) -> EnvLock:
        lock = replace(lock, at=as_utc(lock.at))
        with self._lock:
            return self._env_locks.setdefault(lock.environment, lock)

    def unlock(self, environment: str) -> EnvLock | None:
        with self._lock:
            return self._env_locks.pop(environment, None)

    def locks(self) -> list[EnvLock]:
        with self._lock:
            return sorted(self._env_locks.values(), key=lambda lock: lock.environment)

    def save_thread(self, thread: ChatThread) -> None:
        with self._lock:
            self._run(thread.run_id)
            self._threads[thread.run_id] = thread

    def thread(self, run_id: int) -> ChatThread | None:
        with self._lock:
            self._run(run_id)
            return self._threads.get(run_id)

    def run_at(self, channel: str, ts: str) -> int | None:
        if not ts:
            return None  # "" means "no such message" in a thread, not a message to look up
        with self._lock:
            found = [
                t.run_id
                for t in self._threads.values()
                if t.channel == channel and ts in (t.plan_ts, t.approval_ts)
            ]
        return min(found, default=None)

    def _run(self, run_id: int) -> Run:
        try:
            return self._runs[run_id]
        except KeyError:
            raise unknown_run(run_id) from None

    def _check_instance_free(self, run: Run) -> None:
        key = run.plan.instance_key
        for other in self._runs.values():
            mine = other.id == run.id
            if not mine and other.state in ACTIVE_STATES and other.plan.instance_key == key:
                raise instance_busy(run.id, key, other.id, other.state, other.requested_by)


def _vote_key(vote: Vote) -> tuple[str, Decision, str]:
    """What makes a vote unique within its run, as the SQL store's unique key."""
    return (vote.user, vote.decision, vote.plan_digest)
