"""The Shell port's twin: a host that answers commands from a script, on a simulated clock.

A scripted program prints all of its stdout and stderr as it starts, then runs for `seconds` of
simulated time and exits. Time only moves on the twin's own clock, so a step that "runs for an
hour" past its timeout raises `StepTimeout` at once, and tests never sleep.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.domain.errors import ConnectionLost, HostUnreachable, OperationalError, StepTimeout
from bot.domain.inventory import SshTarget
from bot.domain.output import CommandResult, LineSink, OutputCollector, Stream


@dataclass(frozen=True, kw_only=True)
class ScriptedCommand:
    """What the twin does for commands matching `pattern` (searched anywhere in the command)."""

    pattern: re.Pattern[str]
    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = 0  # None: killed by a signal, so no exit status
    seconds: float = 0.0
    lose_connection: bool = False  # the connection drops once the output is printed


class MemoryShell:
    """In-memory twin of `Shell`. Script it with `on()`; `commands` lists every command run.

    The most recently registered matching response wins, so a test can override a default set up
    by a fixture. A command nothing matches exits 127 with `sh: <command>: not found` on stderr.
    """

    def __init__(self, host: str = "memory", *, epoch: datetime | None = None) -> None:
        self.host = host
        self.commands: list[str] = []
        self.elapsed = 0.0  # simulated seconds spent in commands so far
        self.closed = False
        self._epoch = epoch or datetime.now(UTC)
        self._script: list[ScriptedCommand] = []
        self._lock = threading.RLock()  # a sink may run another command

    def on(
        self,
        pattern: str,
        *,
        stdout: str = "",
        stderr: str = "",
        exit_code: int | None = 0,
        seconds: float = 0.0,
        lose_connection: bool = False,
    ) -> MemoryShell:
        """Answer commands matching the regex `pattern` like this. Returns self for chaining."""
        self._script.append(
            ScriptedCommand(
                pattern=re.compile(pattern),
                stdout=stdout,
                stderr=stderr,
                exit_code=exit_code,
                seconds=seconds,
                lose_connection=lose_connection,
            )
        )
        return self

    def run(
        self, command: str, *, timeout: float, on_line: LineSink | None = None
    ) -> CommandResult:
        with self._lock:
            if self.closed:
                raise ConnectionLost(
                    f"The connection to {self.host} is closed: connect again.", host=self.host
                )
            self.commands.append(command)
            program = self._match(command)
            started_at = self._epoch + timedelta(seconds=self.elapsed)
            collector = OutputCollector(on_line)
            stopped = _print(collector, Stream.STDOUT, program.stdout) or _print(
                collector, Stream.STDERR, program.stderr
            )
            ran_for = 0.0 if stopped else min(program.seconds, timeout)
            self.elapsed += ran_for
            out, err = collector.finish()
            finished = not stopped and program.seconds <= timeout and not program.lose_connection
            result = CommandResult(
                host=self.host,
                command=command,
                exit_code=program.exit_code if finished else None,
                stdout=out,
                stderr=err,
                started_at=started_at,
                duration=ran_for,
                stopped_early=stopped,
            )
        if stopped or finished:
            return result
        if program.seconds > timeout:
            raise StepTimeout(
                f"The command on {self.host} ran past its {timeout:g}s timeout and was stopped.",
                host=self.host,
                result=result,
            )
        raise ConnectionLost(
            f"The connection to {self.host} dropped while a command ran; check on the host "
            "whether it finished before retrying.",
            host=self.host,
            result=result,
        )

    def close(self) -> None:
        self.closed = True

    def reopen(self) -> None:
        """Let a closed twin serve a new connection (the connector does this on connect)."""
        self.closed = False

    def _match(self, command: str) -> ScriptedCommand:
        for scripted in reversed(self._script):
            if scripted.pattern.search(command):
                return scripted
        return ScriptedCommand(
            pattern=re.compile(re.escape(command)),
            stderr=f"sh: {command}: not found\n",
            exit_code=127,
        )


def _print(collector: OutputCollector, stream: Stream, text: str) -> bool:
    """Feed `text` line by line, as a program writing lines would; True once asked to stop."""
    return any(collector.feed(stream, line.encode()) for line in text.splitlines(keepends=True))


class MemoryShellConnector:
    """Twin of `ShellConnector`: hands out the `MemoryShell` registered for a target.

    A target is looked up as `user@host:port` first, then by its host name. Connecting to a host
    with no shell registered raises `HostUnreachable`, as a wrong name in the inventory would.
    """

    def __init__(self, shells: dict[str, MemoryShell] | None = None) -> None:
        self.shells: dict[str, MemoryShell] = dict(shells or {})
        self.connects: list[SshTarget] = []
        self._failures: dict[str, OperationalError] = {}

    def shell(self, name: str) -> MemoryShell:
        """The twin host called `name` (a host name or `user@host:port`), created if new."""
        if name not in self.shells:
            self.shells[name] = MemoryShell(name)
        return self.shells[name]

    def fail(self, name: str, error: OperationalError | None) -> None:
        """Make connecting to `name` raise `error` (e.g. `HostKeyRejected(...)`); None heals it."""
        if error is None:
            self._failures.pop(name, None)
        else:
            self._failures[name] = error

    def connect(self, target: SshTarget) -> MemoryShell:
        self.connects.append(target)
        keys = (str(target), target.host)
        for key in keys:
            if key in self._failures:
                raise self._failures[key]
        for key in keys:
            if key in self.shells:
                shell = self.shells[key]
                shell.reopen()
                return shell
        raise HostUnreachable(
            f"Cannot reach {target}: the memory twin has no host of that name. "
            "Register it with `connector.shell(name)`.",
            host=str(target),
        )
