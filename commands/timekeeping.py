"""The part of the conversation that keeps time: scheduled runs asked for, reminded of, started
at their time (or not, saying why), listed and cancelled; and the behind-latest digest.

`Conversation` mixes it in, so both share one chat and one set of helpers, and through it the
conversation is the `ScheduledWork` the scheduler calls when a job is due. Those calls come on the
scheduler's threads: each answers for its own errors (logged, and told in the run's thread where
there is one), never raising into the scheduler.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from bot.domain.approval import Tally
from bot.domain.plan import Plan
from bot.domain.run import Run
from bot.engine.approvals import Approval
from bot.engine.planning import UpgradeRequest
from bot.engine.scheduling import Scheduling, StartCheck, Verdict
from bot.engine.service import UpgradeService
from commands.chat import Chat
from commands.grammar import Upgrade
from commands.views import (
    WHEN,
    DigestView,
    Notice,
    PlanView,
    ReminderView,
    ScheduleListView,
    Tone,
)

log = logging.getLogger(__name__)


def ask_again(plan: Plan) -> str:
    """The command that asks for the same upgrade anew."""
    where = f" env={plan.environment}" + ("" if plan.members else f" instance={plan.instance}")
    return f"/upgrade {plan.product} {plan.to_version}{where}"


def _who(tally: Tally, waiting_for: tuple[str, ...]) -> str:
    names = ", ".join(f"<@{u}>" for u in waiting_for) or "nobody (see the policy)"
    return f"{tally.missing} more approval{'s' if tally.missing != 1 else ''} from {names}"


class TimekeepingMixin:
    """Scheduled runs and the digest, for `Conversation` (which provides what is declared here)."""

    service: UpgradeService
    scheduling: Scheduling
    _chat: Chat

    def start(self, run_id: int) -> None:
        raise NotImplementedError  # `Conversation` hands the run to its run pool

    def _post_request(
        self, approval: Approval, *, user: str, channel: str, window: str = ""
    ) -> None:
        raise NotImplementedError

    def _tell_thread(self, run_id: int, notice: Notice, *, broadcast: bool = False) -> None:
        raise NotImplementedError

    def _refresh_approval(self, run_id: int) -> None:
        raise NotImplementedError

    def _whisper(self, channel: str, user: str, view: Any) -> None:
        raise NotImplementedError

    # -- asking ---------------------------------------------------------------------------------

    def _schedule(
        self, command: Upgrade, request: UpgradeRequest, *, user: str, channel: str
    ) -> None:
        """An upgrade asked for with `at=` or `window=`: planned and approved now, run later."""
        if command.dry_run:
            starts_at = self.scheduling.start_time(
                request, requester=user, at=command.at, window=command.window
            )
            plan = self.service.plan(request)
            self._whisper(
                channel,
                user,
                PlanView(
                    plan=plan, requested_by=user, starts_at=starts_at, window=command.window or ""
                ),
            )
            return
        entry = self.scheduling.request(
            request, requester=user, at=command.at, window=command.window
        )
        self._post_request(entry.approval, user=user, channel=channel, window=entry.window)

    def _approved(self, run: Run) -> None:
        """A run's approval is complete: start it, or, if it has a start time ahead, say when."""
        if run.starts_at is None:
            self.start(run.id)
        elif run.starts_at > self.service.clock.now():
            self._tell_thread(
                run.id,
                Notice(
                    text=f"Run #{run.id} is approved. It starts {WHEN}; nothing runs before then.",
                    tone=Tone.SUCCESS,
                    when=run.starts_at,
                ),
            )
        else:  # approved after its start time: the start decides, as if its job ran now
            self.start_due(run.id)

    def _schedule_list(self, *, user: str, channel: str) -> None:
        self._whisper(channel, user, ScheduleListView(entries=tuple(self.scheduling.scheduled())))

    def _schedule_cancel(self, run_id: int, *, user: str) -> None:
        run = self.scheduling.cancel(run_id, user=user)
        self._tell_thread(
            run.id,
            Notice(
                text=f"Run #{run.id}, scheduled for {WHEN}, was cancelled by <@{user}>. "
                "It will not start.",
                tone=Tone.WARNING,
                when=run.starts_at,
            ),
        )
        self._refresh_approval(run.id)

    # -- ScheduledWork --------------------------------------------------------------------------

    def start_due(self, run_id: int) -> None:
        """The run's start time has come: start it, or say in its thread why it does not."""
        with self._answering(run_id, "starting"):
            check = self.scheduling.due(run_id)
            self._tell_start(check)
            if check.verdict is Verdict.START:
                self.start(run_id)

    def remind(self, run_id: int, before: timedelta) -> None:
        with self._answering(run_id, "reminding of"):
            entry = self.scheduling.reminder(run_id, before)
            thread = self.service.store.thread(run_id)
            if entry is not None and thread is not None:
                self._chat.post(
                    thread.channel,
                    ReminderView(entry=entry, before=before),
                    thread_ts=thread.plan_ts,
                    broadcast=True,  # the channel sees it too: people must act before the start
                )

    def behind_latest(self) -> None:
        channel = self.scheduling.settings.digest_channel
        if not channel:
            return
        with self._answering(None, "checking the versions of"):
            lags = self.service.behind_latest()
            if lags:
                view = DigestView(lags=tuple(lags), checked_at=self.service.clock.now())
                self._chat.post(channel, view)

    def _expire_overdue(self) -> None:
        """The sweep's share: scheduled runs whose start was lost end as missed, saying so."""
        for check in self.scheduling.overdue():
            self._tell_start(check)

    # -- internals ------------------------------------------------------------------------------

    def _tell_start(self, check: StartCheck) -> None:
        run = check.run
        if check.verdict is Verdict.NOT_DUE:
            return
        if check.verdict is Verdict.START:
            if check.late:
                minutes = max(1, round(check.late.total_seconds() / 60))
                text = (
                    f"Run #{run.id} starts now, {minutes} min late: the bot was not running at "
                    f"its start time ({WHEN})."
                )
            else:
                text = f"It is {WHEN}: run #{run.id} starts now, as scheduled."
            self._tell_thread(run.id, Notice(text=text, when=run.starts_at), broadcast=True)
            return
        text = f"Run #{run.id} did not start at {WHEN}: {check.reason}. Nothing was run."
        if check.verdict is Verdict.NOT_APPROVED and check.approval is not None:
            approval = check.approval
            text += f" It still needed {_who(approval.tally, approval.waiting_for)}."
        if check.verdict is Verdict.PLAN_CHANGED:
            text += " The approvals were given for the old plan, so they no longer apply."
        text += f" If it is still wanted, ask again: `{ask_again(run.plan)} at=...`."
        self._tell_thread(
            run.id, Notice(text=text, tone=Tone.WARNING, when=run.starts_at), broadcast=True
        )
        self._refresh_approval(run.id)

    @contextlib.contextmanager
    def _answering(self, run_id: int | None, doing: str) -> Iterator[None]:
        """Scheduler callbacks log what fails; a run's thread hears of it with a reference."""
        try:
            yield
        except Exception:
            reference = uuid.uuid4().hex[:8]
            what = f"run #{run_id}" if run_id is not None else "the instances"
            log.exception("failed %s %s (reference %s)", doing, what, reference)
            if run_id is None:
                return
            with contextlib.suppress(Exception):
                self._tell_thread(
                    run_id,
                    Notice(
                        text=f"Sorry, the bot hit an error {doing} run #{run_id} (reference "
                        f"{reference}). Check `/upgrade status {run_id}`.",
                        tone=Tone.ERROR,
                    ),
                )
