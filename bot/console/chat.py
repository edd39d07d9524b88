"""The `Chat` port on a terminal: the conversation printed with rich, as it happens.

Messages get numbers for `ts`, so threads and edits work as in Slack. Progress edits are printed
only when the run's state changes (each finished step is printed as its own reply anyway).
"""

from __future__ import annotations

import itertools
import threading

from rich.console import Console
from rich.rule import Rule

from bot.console.render import render
from bot.domain.redaction import Redactor
from commands.views import HomeView, ProgressView, View, transfer_bar


class ConsoleChat:
    """Implements `commands.chat.Chat` by printing to a rich `Console`."""

    def __init__(self, console: Console, redactor: Redactor | None = None) -> None:
        self._console = console
        self._redact = redactor or Redactor()
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._shown_state: dict[str, str] = {}
        self._shown_transfer: dict[str, int] = {}

    def post(
        self, channel: str, view: View, *, thread_ts: str | None = None, broadcast: bool = False
    ) -> str:
        ts = str(next(self._numbers))
        where = f"{channel} · thread {thread_ts}" if thread_ts else channel
        self._show(f"{where}{' (also in the channel)' if broadcast else ''}", view)
        if isinstance(view, ProgressView):
            self._shown_state[ts] = view.run.state.value
        return ts

    def update(self, channel: str, ts: str, view: View) -> None:
        if isinstance(view, ProgressView):
            if view.transfer is not None:
                self._show_transfer(ts, view)
            if self._shown_state.get(ts) == view.run.state.value:
                return
            self._shown_state[ts] = view.run.state.value
        self._show(f"{channel} · message {ts} (updated)", view)

    def _show_transfer(self, ts: str, view: ProgressView) -> None:
        """A transfer's progress bar, a line each tenth of the way (not on every edit)."""
        transfer = view.transfer
        assert transfer is not None
        step = transfer.done * 10 // transfer.total if transfer.total else transfer.done >> 27
        key = f"{ts}:{transfer.step_title}"
        if self._shown_transfer.get(key) != step:
            self._shown_transfer[key] = step
            self._print(f"  {transfer.step_title}: {transfer_bar(transfer)}")

    def post_ephemeral(self, channel: str, user: str, view: View) -> None:
        self._show(f"{channel} · only {user} sees this", view)

    def upload(
        self, channel: str, thread_ts: str, *, filename: str, content: str, title: str
    ) -> None:
        lines = content.count("\n") + 1
        self._print(
            f"[{channel} · thread {thread_ts}] attached {filename} ({lines} lines): "
            f"{self._redact.text(title)}"
        )

    def publish_home(self, user: str, view: HomeView) -> None:
        self._show(f"home tab of {user}", view)

    def _show(self, where: str, view: View) -> None:
        with self._lock, self._console.capture() as captured:
            self._console.print(Rule(where, align="left", style="dim"))
            self._console.print(render(view))
        self._write(captured.get())

    def _print(self, text: str) -> None:
        with self._lock, self._console.capture() as captured:
            self._console.print(text, markup=False, highlight=False)
        self._write(captured.get())

    def _write(self, text: str) -> None:
        # rendered first, then redacted: a secret is masked however the view laid it out
        with self._lock:
            self._console.file.write(self._redact.text(text))
            self._console.file.flush()
