"""`KeptConnections`: SSH connections kept open between runs, so the next run on a host does not
pay for a new connection (docs/benchmarks.md has what that saves).

When a run closes its shell, the connection waits in the pool for `target.keep_open` seconds and
is then closed; with `keep_open` 0 it is closed at once. A connection is handed to one run at a
time, and only after sshd answered a keepalive on it within the target's connect timeout, so a
connection that died while it waited is replaced before any step starts on it, never found out by
a step. Nothing carries over from one run to the next: every command has its own channel, and
each file transfer opens and closes its file on the SFTP session. A connection is kept for at
most `max_age` from when it was opened (its host key was checked then), and one that dropped is
never kept.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from adapters.ssh import ParamikoConnector, ParamikoShell
from bot.domain.errors import ConnectionLost
from bot.domain.inventory import SshTarget
from bot.domain.output import CommandResult, LineSink
from bot.domain.ports import Progress

log = logging.getLogger(__name__)

MAX_AGE = 3600.0


@dataclass
class _Idle:
    shell: ParamikoShell
    opened: float  # time.monotonic() when it connected
    since: float  # when it went back to the pool


class KeptConnections:
    """A `ShellConnector` that reuses idle connections to the same target. `close()` closes
    the idle ones (the bot calls it when it stops)."""

    def __init__(self, connector: ParamikoConnector, *, max_age: float = MAX_AGE) -> None:
        self._connector = connector
        self._max_age = max_age
        self._idle: dict[SshTarget, list[_Idle]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._sweeper: threading.Thread | None = None

    def connect(self, target: SshTarget) -> KeptShell:
        while (kept := self._take(target)) is not None:
            if kept.shell.answers(timeout=target.connect_timeout):
                return KeptShell(self, target, kept.shell, opened=kept.opened)
            log.info("A kept connection to %s no longer answers: connecting again", target)
            kept.shell.close()
        shell = self._connector.connect(target)
        return KeptShell(self, target, shell, opened=time.monotonic())

    def idle(self, target: SshTarget) -> int:
        """How many connections to `target` wait in the pool now."""
        with self._lock:
            return len(self._idle.get(target, ()))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle = [kept for waiting in self._idle.values() for kept in waiting]
            self._idle.clear()
            self._wake.notify_all()
        for kept in idle:
            kept.shell.close()

    def _take(self, target: SshTarget) -> _Idle | None:
        with self._lock:
            waiting = self._idle.get(target)
            return waiting.pop() if waiting else None  # the most recently used first

    def _give_back(self, target: SshTarget, shell: ParamikoShell, *, opened: float) -> None:
        now = time.monotonic()
        keep = target.keep_open > 0 and now - opened < self._max_age and shell.is_open()
        if keep:
            with self._lock:
                if not self._closed:
                    self._idle.setdefault(target, []).append(_Idle(shell, opened, since=now))
                    self._start_sweeper()
                    self._wake.notify_all()
                    return
        shell.close()

    def _start_sweeper(self) -> None:
        if self._sweeper is None:
            self._sweeper = threading.Thread(target=self._sweep, name="ssh-kept", daemon=True)
            self._sweeper.start()

    def _sweep(self) -> None:
        """Close each idle connection once it has waited `keep_open`, or reached `max_age`."""
        while True:
            with self._lock:
                if self._closed:
                    return
                now, expired, next_due = time.monotonic(), [], None
                for target, waiting in self._idle.items():
                    for kept in list(waiting):
                        due = min(kept.since + target.keep_open, kept.opened + self._max_age)
                        if due <= now:
                            waiting.remove(kept)
                            expired.append(kept)
                        else:
                            next_due = due if next_due is None else min(next_due, due)
                self._idle = {t: w for t, w in self._idle.items() if w}
                if not expired:
                    self._wake.wait(None if next_due is None else next_due - now)
                    continue
            for kept in expired:
                kept.shell.close()


class KeptShell:
    """A run's use of a connection from `KeptConnections`; `close()` gives it back, unless a
    call found it lost (even if the transport still looks up: a stalled link, say)."""

    def __init__(
        self, pool: KeptConnections, target: SshTarget, shell: ParamikoShell, *, opened: float
    ) -> None:
        self.host = shell.host
        self._pool, self._target, self._shell, self._opened = pool, target, shell, opened
        self._returned = self._lost = False

    def run(
        self, command: str, *, timeout: float, on_line: LineSink | None = None
    ) -> CommandResult:
        with self._watch():
            return self._shell.run(command, timeout=timeout, on_line=on_line)

    def read_file(self, path: str, *, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        with self._watch():
            yield from self._shell.read_file(path, chunk_size=chunk_size)

    def write_file(
        self, path: str, chunks: Iterable[bytes], *, progress: Progress | None = None
    ) -> int:
        with self._watch():
            return self._shell.write_file(path, chunks, progress=progress)

    def close(self) -> None:
        if self._returned:
            return
        self._returned = True
        if self._lost:
            self._shell.close()
        else:
            self._pool._give_back(self._target, self._shell, opened=self._opened)

    @contextlib.contextmanager
    def _watch(self) -> Iterator[None]:
        try:
            yield
        except ConnectionLost:
            self._lost = True
            raise
