"""The conversation, surface-neutral: commands, votes and runs, told through a `Chat`.

Slack listeners and the console call these methods from a worker (never from the thread that
must acknowledge Slack). What to say and where (channel, thread, or the user alone) is decided
here; how it looks is the surface's business.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import replace
from typing import Any, Protocol

from bot.domain.approval import Decision
from bot.domain.conversation import ChatThread
from bot.domain.errors import BotError, OperationalError
from bot.domain.run import Run, RunState
from bot.engine.approvals import Approval
from bot.engine.planning import UpgradeRequest
from bot.engine.recovery import can_resume
from bot.engine.report import build_report
from bot.engine.runner import RunObserver
from bot.engine.scheduling import Scheduling
from bot.engine.service import UpgradeService
from commands.chat import Chat
from commands.grammar import (
    Cancel,
    Help,
    History,
    Lock,
    Resume,
    Rollback,
    ScheduleCancel,
    ScheduleList,
    Status,
    Unlock,
    Upgrade,
    parse,
)
from commands.progress import MemberNotifier, ThreadNotifier
from commands.timekeeping import TimekeepingMixin
from commands.views import (
    ApprovalView,
    HelpView,
    HomeView,
    InterruptedView,
    Notice,
    PlanView,
    RunDetailView,
    RunListView,
    Tone,
)

log = logging.getLogger(__name__)


Drive = Callable[[int, RunObserver], Run]  # execute, resume, go_on or reject_gate of the service


class Submitter(Protocol):
    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]: ...


class Conversation(TimekeepingMixin):
    """What the bot says and does for each command, vote and run; with `TimekeepingMixin`, also
    for scheduled runs and the digest (it is the scheduler's `ScheduledWork`)."""

    def __init__(
        self,
        service: UpgradeService,
        chat: Chat,
        runs: Submitter,
        *,
        scheduling: Scheduling,
        monotonic: Callable[[], float],
        progress_interval: float = 1.5,
    ) -> None:
        self.service = service
        self.scheduling = scheduling
        self._chat = chat
        self._runs = runs
        self._monotonic = monotonic
        self._interval = progress_interval
        # Votes of one run are handled on several workers: each refresh of its approval message
        # reads and posts under this lock, so the message never ends on an older tally.
        self._approval_lock = threading.Lock()

    # -- commands -------------------------------------------------------------------------------

    def command(self, text: str, *, user: str, channel: str) -> None:
        """Handle the text of one `/upgrade` command."""
        with self._replying(channel, user):
            match parse(text):
                case Help():
                    self._whisper(channel, user, self._help())
                case Upgrade() as upgrade:
                    self._upgrade(upgrade, user=user, channel=channel)
                case ScheduleList():
                    self._schedule_list(user=user, channel=channel)
                case ScheduleCancel(run_id=run_id):
                    self._schedule_cancel(run_id, user=user)
                case Status(run_id=None):
                    runs = self.service.active() + [a.run for a in self.service.awaiting()]
                    self._whisper(
                        channel,
                        user,
                        RunListView(
                            title="Active and awaiting approval",
                            runs=tuple(runs),
                            empty="Nothing is running or waiting for approval.",
                        ),
                    )
                case Status(run_id=run_id) if run_id is not None:
                    self._whisper(channel, user, self._detail(run_id))
                case History(product=product, environment=environment):
                    runs = self.service.history(product=product, environment=environment)
                    self._whisper(channel, user, RunListView(title="Recent runs", runs=tuple(runs)))
                case Rollback(run_id=run_id) if self._interrupted(run_id):
                    self._go_on(run_id, user=user, resume=False)
                case Resume(run_id=run_id):
                    self._go_on(run_id, user=user, resume=True)
                case Rollback(run_id=run_id):
                    approval = self.service.request_rollback(run_id, requester=user)
                    self._post_request(approval, user=user, channel=channel)
                    self._tell_thread(
                        run_id,
                        Notice(
                            text=f"<@{user}> asked to roll back run #{run_id}: run "
                            f"#{approval.run.id} waits for approval.",
                            tone=Tone.WARNING,
                        ),
                    )
                case Cancel(run_id=run_id):
                    run = self.service.cancel(run_id, user=user)
                    self.scheduling.forget(run.id)
                    self._tell_thread(
                        run.id,
                        Notice(
                            text=f"Run #{run.id} was cancelled by <@{user}>.", tone=Tone.WARNING
                        ),
                    )
                    self._refresh_approval(run.id)
                case Lock(environment=environment, reason=reason):
                    lock = self.service.lock(environment, user=user, reason=reason)
                    self._chat.post(
                        channel,
                        Notice(
                            text=f":lock: {lock.environment} is locked by <@{lock.locked_by}>: "
                            f"{lock.reason}. No upgrade starts there until "
                            f"`/upgrade unlock {lock.environment}`.",
                            tone=Tone.WARNING,
                        ),
                    )
                case Unlock(environment=environment):
                    removed = self.service.unlock(environment, user=user)
                    text = (
                        f":unlock: {environment} was unlocked by <@{user}>."
                        if removed
                        else f"{environment} was not locked."
                    )
                    self._chat.post(channel, Notice(text=text))

    def _upgrade(self, command: Upgrade, *, user: str, channel: str) -> None:
        request = UpgradeRequest(
            product=command.product,
            version=command.version,
            environment=command.environment,
            instance=command.instance,
            strategy=command.strategy,
            allow_downgrade=command.allow_downgrade,
        )
        if command.scheduled:
            self._schedule(command, request, user=user, channel=channel)
            return
        if command.dry_run:
            plan = self.service.plan(request)
            self._whisper(channel, user, PlanView(plan=plan, requested_by=user))
            return
        self.scheduling.check_now(request, requester=user)  # a run asked for now starts now
        self._post_request(
            self.service.request(request, requester=user), user=user, channel=channel
        )

    def _post_request(
        self, approval: Approval, *, user: str, channel: str, window: str = ""
    ) -> None:
        """The plan in the channel, the approval request in its thread; start if approved (at
        its start time, if it has one)."""
        run = approval.run
        view = PlanView(
            plan=run.plan, requested_by=user, run_id=run.id, starts_at=run.starts_at, window=window
        )
        plan_ts = self._chat.post(channel, view)
        # kept at once: a reaction on the plan may come before the approval request is posted
        thread = ChatThread(run_id=run.id, channel=channel, plan_ts=plan_ts)
        self.service.store.save_thread(thread)
        approval_ts = self._chat.post(channel, ApprovalView(approval=approval), thread_ts=plan_ts)
        self.service.store.save_thread(replace(thread, approval_ts=approval_ts))
        if self.service.run(run.id).state is not run.state:  # decided while it was posted
            self._refresh_approval(run.id)
        if run.state is RunState.APPROVED:
            self._approved(run)

    # -- votes ----------------------------------------------------------------------------------

    def vote(
        self,
        *,
        user: str,
        channel: str,
        ts: str,
        decision: Decision,
        via: str,
        run_id: int | None = None,
        digest: str | None = None,
        event_id: str | None = None,
    ) -> None:
        """A vote by button (run id and digest known) or by reaction (found by message)."""
        run_id = run_id or self.service.store.run_at(channel, ts)
        if run_id is None or not self._first(event_id):
            return  # a reaction on another message, or a retry of an event already handled
        with self._replying(channel, user):
            outcome = self.service.vote(
                run_id, user=user, decision=decision, digest=digest, via=via
            )
            if not outcome.counted:
                return
            tally = outcome.approval.tally
            verb = "approved" if decision is Decision.APPROVE else "rejected"
            self._tell_thread(
                run_id,
                Notice(
                    text=f"<@{user}> {verb} run #{run_id} "
                    f"({len(tally.approved_by)} of {tally.required} approvals).",
                    tone=Tone.SUCCESS if decision is Decision.APPROVE else Tone.WARNING,
                ),
            )
            self._refresh_approval(run_id)
            if outcome.approval.gate is not None:
                if outcome.now_approved:
                    self._submit(run_id, self.service.resume)
                elif outcome.now_rejected:
                    self._submit(run_id, self.service.reject_gate)
            elif outcome.now_approved:
                self._approved(outcome.approval.run)
            elif outcome.now_rejected:
                self.scheduling.forget(run_id)

    def withdraw(
        self,
        *,
        user: str,
        channel: str,
        ts: str,
        decision: Decision,
        event_id: str | None = None,
    ) -> None:
        """A removed reaction: the vote is withdrawn if the run has not been decided yet."""
        run_id = self.service.store.run_at(channel, ts)
        if run_id is None or not self._first(event_id):
            return
        with self._replying(channel, user):
            if self.service.withdraw(run_id, user=user, decision=decision) is not None:
                self._tell_thread(
                    run_id,
                    Notice(text=f"<@{user}> withdrew their {decision.value} of run #{run_id}."),
                )
                self._refresh_approval(run_id)

    def expire_due(self) -> None:
        """The periodic sweep: expire approval requests that ran out, and scheduled runs whose
        start was lost."""
        self._expire_overdue()
        for run in self.service.expire_due():
            self._tell_thread(
                run.id,
                Notice(
                    text=f"Run #{run.id} expired: it was not approved in time. Nothing was run. "
                    "Ask again with `/upgrade` if it is still wanted.",
                    tone=Tone.WARNING,
                ),
            )
            self._refresh_approval(run.id)

    def tell_interrupted(self, run: Run) -> None:
        """A run was cut off (its process stopped): say so in its thread, with what an approver
        may do now. Nothing runs again until one decides."""
        steps = self.service.store.steps(run.id)
        view = InterruptedView(
            run=run,
            reason=self.service.store.events(run.id)[-1].reason,
            can_resume=can_resume(steps),
        )
        thread = self.service.store.thread(run.id)
        if thread is not None:
            self._chat.post(thread.channel, view, thread_ts=thread.plan_ts, broadcast=True)

    def _interrupted(self, run_id: int) -> bool:
        return self.service.run(run_id).state is RunState.INTERRUPTED

    def _go_on(self, run_id: int, *, user: str, resume: bool) -> None:
        """An approver's decision on an interrupted run; the run then goes on in the pool."""
        self.service.decide_interrupted(run_id, user=user, resume=resume)
        verb = "resume it from the step left in doubt" if resume else "roll it back"
        self._tell_thread(
            run_id,
            Notice(text=f"<@{user}> decided to {verb}: run #{run_id} goes on.", tone=Tone.WARNING),
        )
        self._submit(run_id, self.service.go_on)

    def home(self, user: str) -> None:
        view = HomeView(
            user=user,
            active=tuple(self.service.active()),
            awaiting=tuple(self.service.awaiting()),
            recent=tuple(self.service.history(limit=10)),
            scheduled=tuple(self.scheduling.scheduled()),
        )
        self._chat.publish_home(user, view)

    # -- running --------------------------------------------------------------------------------

    def start(self, run_id: int) -> None:
        """Hand an approved run to the run pool."""

        def execute(run_id: int, observer: RunObserver) -> Run:
            thread = self.service.store.thread(run_id)
            members = (
                None
                if thread is None
                else (lambda member: MemberNotifier(self._chat, thread, self.service.store))
            )
            run = self.service.execute(run_id, observer, member_observer=members)
            if run.state is RunState.CANCELLED:  # refused at the start: locked, or not allowed
                reason = self.service.store.events(run_id)[-1].reason
                self._tell_thread(
                    run_id,
                    Notice(text=f"Run #{run_id} did not start: {reason}", tone=Tone.WARNING),
                )
            return run

        self._submit(run_id, execute)

    def _submit(self, run_id: int, drive: Drive) -> None:
        try:
            self._runs.submit(self._drive, run_id, drive)
        except RuntimeError:
            self._tell_thread(
                run_id,
                Notice(
                    text=f"Run #{run_id} is ready but the bot is running as many upgrades as it "
                    "may; it did not go on. Ask again when one has finished.",
                    tone=Tone.ERROR,
                ),
            )

    def _drive(self, run_id: int, drive: Drive) -> None:
        """Run `drive` (execute, resume or reject at a gate) with the thread told about it."""
        store = self.service.store
        thread = store.thread(run_id)
        if thread is None:
            log.error("run %s has no chat thread; it is not driven", run_id)
            return
        notifier = ThreadNotifier(
            self._chat, thread, store, self.service.clock, self._monotonic, interval=self._interval
        )
        try:
            thread = notifier.start(store.get(run_id), store.steps(run_id))
            store.save_thread(thread)
            run = drive(run_id, notifier)
        except BotError as exc:
            self._tell_thread(run_id, Notice(text=str(exc), tone=Tone.ERROR))
            return
        except Exception:
            reference = uuid.uuid4().hex[:8]
            log.exception("run %s failed inside the bot (reference %s)", run_id, reference)
            self._tell_thread(
                run_id,
                Notice(
                    text=f"Sorry, the bot hit an internal error running #{run_id} (reference "
                    f"{reference}). Check `/upgrade status {run_id}` before doing anything else.",
                    tone=Tone.ERROR,
                ),
            )
            return
        if run.state is RunState.WAITING:
            self._ask_at_gate(run, thread)

    def _ask_at_gate(self, run: Run, thread: ChatThread) -> None:
        """Post the gate's approval request, with the evidence so far, and make it the thread's
        approval message (reactions on it count)."""
        report = build_report(run, self.service.store.steps(run.id))
        evidence = tuple(
            f"{'PASS' if c.result.passed else 'FAIL'} {c.step_title}: {c.result.evidence}"
            for c in report.verifications
        )
        view = ApprovalView(approval=self.service.approval(run), evidence=evidence)
        ts = self._chat.post(thread.channel, view, thread_ts=thread.plan_ts)
        self.service.store.save_thread(
            replace(self.service.store.thread(run.id) or thread, approval_ts=ts)
        )

    # -- helpers --------------------------------------------------------------------------------

    def _help(self) -> HelpView:
        products = tuple(
            f"{r.product} ({', '.join(r.aliases)})" if r.aliases else r.product
            for r in self.service.catalog.runbooks
        )
        return HelpView(products=products, environments=tuple(self.service.inventory.environments))

    def _detail(self, run_id: int) -> RunDetailView:
        run = self.service.run(run_id)
        approval = self.service.approval(run) if run.state is RunState.AWAITING_APPROVAL else None
        return RunDetailView(
            report=build_report(run, self.service.store.steps(run_id)), approval=approval
        )

    def _first(self, event_id: str | None) -> bool:
        return event_id is None or self.service.store.first_sighting(
            event_id, self.service.clock.now()
        )

    def _refresh_approval(self, run_id: int) -> None:
        thread = self.service.store.thread(run_id)
        if thread is not None and thread.approval_ts:
            with self._approval_lock:
                approval = self.service.approval(self.service.run(run_id))
                view = ApprovalView(approval=approval)
                self._chat.update(thread.channel, thread.approval_ts, view)

    def _tell_thread(self, run_id: int, notice: Notice, *, broadcast: bool = False) -> None:
        thread = self.service.store.thread(run_id)
        if thread is not None:
            self._chat.post(thread.channel, notice, thread_ts=thread.plan_ts, broadcast=broadcast)

    def _whisper(self, channel: str, user: str, view: Any) -> None:
        self._chat.post_ephemeral(channel, user, view)

    @contextlib.contextmanager
    def _replying(self, channel: str, user: str) -> Iterator[None]:
        """User mistakes and refusals answer the user alone; bugs get a reference."""
        try:
            yield
        except OperationalError as exc:
            text = str(exc)
            if exc.result is not None and exc.result.tail(5):
                text += f"\nLast output:\n{exc.result.tail(5)}"
            self._whisper(channel, user, Notice(text=text, tone=Tone.ERROR))
        except BotError as exc:
            self._whisper(channel, user, Notice(text=str(exc), tone=Tone.WARNING))
        except Exception:
            reference = uuid.uuid4().hex[:8]
            log.exception("unexpected error for %s in %s (reference %s)", user, channel, reference)
            self._whisper(
                channel,
                user,
                Notice(
                    text=f"Sorry, something went wrong inside the bot (reference {reference}).",
                    tone=Tone.ERROR,
                ),
            )
