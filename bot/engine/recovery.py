"""Runs whose process stopped: taken over as interrupted, never silently re-run.

Every bot process renews its claims on the runs it executes (`ClaimKeeper`, a heartbeat) and looks
for runs whose claim ran out: their process died, was killed or stalled. Such a run is marked
interrupted, naming the step left in doubt, and the thread is told so; from there a person
decides to resume it, roll it back or cancel it. At start-up the same look finds what a crash of
this very process left behind.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from bot.domain.errors import OperationalError, UserError
from bot.domain.ports import Clock, RunStore
from bot.domain.run import Phase, Run, StepResult, StepStatus, needed_rollback

log = logging.getLogger(__name__)


def take_over_lapsed(store: RunStore, clock: Clock) -> list[Run]:
    """Mark every run whose claim ran out `interrupted`, naming the step left in doubt. Of two
    processes looking at once, one takes each run over."""
    interrupted = []
    for run in store.lapsed(at=clock.now()):
        open_steps = [s for s in store.steps(run.id) if s.status is StepStatus.STARTED]
        if open_steps:
            step = open_steps[-1]
            reason = (
                f"The bot process running it stopped while step {step.number} `{step.step_id}` "
                f"({step.phase}) was running; its outcome on the instance is unknown. Check the "
                "instance, then resume, roll back or cancel."
            )
        else:
            reason = (
                "The bot process running it stopped between two steps. Resume, roll back or cancel."
            )
        taken = store.take_over(run.id, run.state, at=clock.now(), reason=reason)
        if taken is not None:
            interrupted.append(taken)
    return interrupted


def can_resume(results: Sequence[StepResult]) -> bool:
    """Whether an interrupted run may go on forwards: not once it began rolling back."""
    return not any(r.phase is Phase.ROLLBACK for r in results)


def check_decision(run: Run, results: Sequence[StepResult], *, resume: bool) -> None:
    """Refuse, with the way out, a decision on an interrupted run that cannot be carried out: a
    fleet as a whole, resuming a rollback, rolling back a run that changed nothing."""
    if run.plan.members:
        raise UserError(
            f"Run #{run.id} upgrades a fleet, which the bot does not resume or roll back as a "
            "whole.",
            f"Decide for each instance's own run (`/upgrade status {run.id}` lists them), then "
            f"`/upgrade cancel {run.id}`.",
        )
    if resume and not can_resume(results):
        raise UserError(
            f"Run #{run.id} was interrupted while it rolled back: it can only roll back further.",
            f"Use `/upgrade rollback {run.id}`.",
        )
    if not resume and not needed_rollback(run.plan, results, automatic=True):
        raise UserError(
            f"Run #{run.id} changed nothing on its hosts yet, so there is nothing to roll back.",
            f"Resume it with `/upgrade resume {run.id}`, or `/upgrade cancel {run.id}`.",
        )


class ClaimKeeper:
    """A thread that renews this process's claims every `interval` seconds and takes over the
    runs of processes that stopped renewing theirs, telling `on_interrupted` of each."""

    def __init__(
        self,
        store: RunStore,
        clock: Clock,
        *,
        interval: float,
        on_interrupted: Callable[[Run], None],
    ) -> None:
        self._store = store
        self._clock = clock
        self._interval = interval
        self._on_interrupted = on_interrupted
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="claims", daemon=True)

    def start(self) -> None:
        self.tick()  # at once: what a crash left behind is said before anything else
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def tick(self) -> None:
        """One beat: renew, then take over. A database failure is logged and retried next beat
        (a claim is long enough to survive a few missed beats)."""
        try:
            self._store.renew_claims(at=self._clock.now())
            for run in take_over_lapsed(self._store, self._clock):
                self._on_interrupted(run)
        except OperationalError as exc:
            log.warning("could not renew or check the claims on runs: %s", exc)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.tick()
