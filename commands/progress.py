"""Posting a run's progress to its thread: one message edited in place, a reply per step, a summary.

Edits are throttled: a change within `interval` of the last edit is held and sent when the
interval is over (a timer), so a quick succession of steps costs one edit, a long step never
leaves an old state showing, and the final state is always sent at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace

from bot.domain.conversation import ChatThread
from bot.domain.plan import PlannedStep
from bot.domain.ports import Clock, RunStore
from bot.domain.run import Phase, Run, RunState, StepResult, StepStatus, needed_rollback
from bot.engine.report import build_report
from bot.engine.runner import SilentObserver
from commands.chat import Chat
from commands.views import (
    ProgressView,
    StepLine,
    StepState,
    StepView,
    SummaryView,
    Transfer,
)

log = logging.getLogger(__name__)

UPLOAD_OVER_LINES = 40  # a step whose output is longer than this also goes up as a file


class Throttle:
    """Calls `send` at most once per `interval` seconds; the last value held is never lost."""

    def __init__(
        self,
        send: Callable[[ProgressView], None],
        interval: float,
        monotonic: Callable[[], float],
    ) -> None:
        self._send = send
        self._interval = interval
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._pending: ProgressView | None = None
        self._last = float("-inf")
        self._timer: threading.Timer | None = None

    def offer(self, view: ProgressView, *, urgent: bool = False) -> None:
        now = self._monotonic()
        with self._lock:
            self._pending = view
            wait = self._last + self._interval - now
            if urgent or wait <= 0:
                self._cancel_timer()
                self._flush_locked(now)
            elif self._timer is None:
                self._timer = threading.Timer(wait, self._flush_later)
                self._timer.daemon = True
                self._timer.start()

    def _flush_later(self) -> None:
        with self._lock:
            self._timer = None
            self._flush_locked(self._monotonic())

    def _flush_locked(self, now: float) -> None:
        view, self._pending = self._pending, None
        if view is not None:
            self._last = now
            try:
                self._send(view)
            except Exception:  # a failed edit must not stop the run it reports on
                log.exception("could not update the progress of run %s", view.run.id)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class ThreadNotifier:
    """A `RunObserver` that tells a run's thread what happens, as it happens."""

    def __init__(
        self,
        chat: Chat,
        thread: ChatThread,
        store: RunStore,
        clock: Clock,
        monotonic: Callable[[], float],
        *,
        interval: float = 1.5,
    ) -> None:
        self._chat = chat
        self._thread = thread
        self._store = store
        self._clock = clock
        self._throttle = Throttle(self._edit, interval, monotonic)
        self._lines: dict[tuple[Phase, int], StepLine] = {}
        self._transfer: Transfer | None = None

    def start(self, run: Run, results: Sequence[StepResult] = ()) -> ChatThread:
        """Show the progress message (posted before the first step, reused after a gate) and
        return the thread with its ts."""
        done = {(r.phase, r.number): r for r in results}
        for planned in run.plan.steps:
            result = done.get((Phase.UPGRADE, planned.number))
            state = (
                StepState.SUCCEEDED
                if result and result.status in (StepStatus.SUCCEEDED, StepStatus.WAITING)
                else StepState.PENDING
            )
            self._set(Phase.UPGRADE, planned, state)
        if self._thread.progress_ts:
            self._edit(self._view(run))
            return self._thread
        ts = self._chat.post(self._thread.channel, self._view(run), thread_ts=self._thread.plan_ts)
        self._thread = replace(self._thread, progress_ts=ts)
        return self._thread

    # -- RunObserver ------------------------------------------------------------------------------

    def state_changed(self, run: Run, reason: str) -> None:
        if run.state is RunState.ROLLING_BACK:
            for planned in needed_rollback(run.plan, self._store.steps(run.id), automatic=True):
                self._set(Phase.ROLLBACK, planned, StepState.PENDING)
        self._throttle.offer(self._view(run))

    def finished(self, run: Run) -> None:
        self._throttle.offer(self._view(run), urgent=True)
        self._post(SummaryView(report=build_report(run, self._store.steps(run.id))), broadcast=True)

    def step_started(self, run: Run, phase: Phase, planned: PlannedStep) -> None:
        self._set(phase, planned, StepState.RUNNING)
        self._throttle.offer(self._view(run))

    def step_finished(self, run: Run, result: StepResult) -> None:
        self._transfer = None
        state = StepState.SUCCEEDED if result.status is StepStatus.SUCCEEDED else StepState.FAILED
        key = (result.phase, result.number)
        if key in self._lines:
            line = self._lines[key]
            self._lines[key] = StepLine(
                phase=line.phase,
                number=line.number,
                title=line.title,
                state=state,
                seconds=result.duration,
            )
        self._throttle.offer(self._view(run))
        self._post(StepView(run_id=run.id, result=result))
        output = result.result
        if output is not None and (
            output.stdout.total_lines + output.stderr.total_lines > UPLOAD_OVER_LINES
        ):
            text = output.stdout.text + (
                "\n--- stderr ---\n" + output.stderr.text if output.stderr.total_bytes else ""
            )
            try:
                self._chat.upload(
                    self._thread.channel,
                    self._thread.plan_ts,
                    filename=f"run-{run.id}-{result.phase}-{result.step_id}.log",
                    content=text,
                    title=f"Output of {result.step_id}",
                )
            except Exception:
                log.exception(
                    "could not upload the output of run %s step %s", run.id, result.step_id
                )

    def output_line(self, run: Run, planned: PlannedStep, line: str) -> None:
        pass  # the excerpt comes with the step's reply; lines would only cost edits

    def transfer(self, run: Run, planned: PlannedStep, done: int, total: int | None) -> None:
        self._transfer = Transfer(step_title=planned.step.title, done=done, total=total)
        self._throttle.offer(self._view(run))

    # -- internals -------------------------------------------------------------------------------

    def _post(self, view: StepView | SummaryView, *, broadcast: bool = False) -> None:
        try:
            self._chat.post(
                self._thread.channel, view, thread_ts=self._thread.plan_ts, broadcast=broadcast
            )
        except Exception:
            log.exception("could not post to the thread of run %s", self._thread.run_id)

    def _set(self, phase: Phase, planned: PlannedStep, state: StepState) -> None:
        self._lines[(phase, planned.number)] = StepLine(
            phase=phase, number=planned.number, title=planned.step.title, state=state
        )

    def _view(self, run: Run) -> ProgressView:
        return ProgressView(
            run=run,
            steps=tuple(self._lines.values()),
            updated_at=self._clock.now(),
            transfer=self._transfer,
        )

    def _edit(self, view: ProgressView) -> None:
        if self._thread.progress_ts:
            self._chat.update(self._thread.channel, self._thread.progress_ts, view)


class MemberNotifier(SilentObserver):
    """A fleet member's run: only its summary goes to the fleet's thread (its steps would drown
    the thread when many instances are upgraded at once)."""

    def __init__(self, chat: Chat, thread: ChatThread, store: RunStore) -> None:
        self._chat = chat
        self._thread = thread
        self._store = store

    def finished(self, run: Run) -> None:
        try:
            self._chat.post(
                self._thread.channel,
                SummaryView(report=build_report(run, self._store.steps(run.id))),
                thread_ts=self._thread.plan_ts,
            )
        except Exception:
            log.exception("could not post the summary of fleet member run %s", run.id)
