"""The Shell port's twin: a host that answers commands from a script, on a simulated clock.

A scripted program prints all of its stdout and stderr as it starts, then runs for `seconds` of
simulated time and exits. Time only moves on the twin's own clock, so a step that "runs for an
hour" past its timeout raises `StepTimeout` at once, and tests never sleep.

Files live in `files` (path -> content), written through a temporary name and renamed into place
as the real shells do, so a test can see what a reader would see in the middle of a write.
"""

from __future__ import annotations

import posixpath
import re
import secrets
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.domain.errors import (
    ConnectionLost,
    FileTransferFailed,
    HostUnreachable,
    OperationalError,
    StepTimeout,
)
from bot.domain.inventory import SshTarget
from bot.domain.output import CommandResult, LineSink, OutputCollector, Stream
from bot.domain.ports import Progress


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

    Files: set `files` (paths are compared as given), `mkdir()` for an empty folder (any prefix of
    a path in `files` is a folder too), `deny()` for permissions, `fail_transfer()` for a failure
    halfway through.
    """

    def __init__(self, host: str = "memory", *, epoch: datetime | None = None) -> None:
        self.host = host
        self.commands: list[str] = []
        self.elapsed = 0.0  # simulated seconds spent in commands so far
        self.closed = False
        self._epoch = epoch or datetime.now(UTC)
        self._script: list[ScriptedCommand] = []
        self._lock = threading.RLock()  # a sink may run another command
        self.files: dict[str, bytes] = {}
        self._folders: set[str] = set()
        self._denied: set[str] = set()
        self._failures: dict[str, tuple[int, OperationalError]] = {}

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
            self._check_open()
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

    def mkdir(self, path: str) -> None:
        """Create an (empty) folder; its parents exist as prefixes."""
        self._folders.add(_folder_key(path))

    def deny(self, path: str) -> None:
        """Refuse access as to something another user owns: a file there cannot be read, a
        folder there cannot get new files (files already in it can still be read)."""
        self._denied.add(_folder_key(path))

    def fail_transfer(self, path: str, after_bytes: int, error: OperationalError) -> None:
        """Make the next read or write of `path` raise `error` once `after_bytes` bytes have
        moved (at the end if the file is shorter). A failed write leaves `path` as it was and
        removes its temporary file, except on `ConnectionLost`: like a real host, the twin then
        keeps the temporary file, since nobody could remove it."""
        self._failures[path] = (after_bytes, error)

    def read_file(self, path: str, *, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, not {chunk_size}")
        with self._lock:
            self._check_open()
            if path not in self.files:
                problem = "is a folder, not a file" if self._is_folder(path) else "does not exist"
                raise self._refused(f"{path} on {self.host} {problem}. Check the path.")
            if path in self._denied:
                raise self._refused(
                    f"{self.host} refused to read {path} (permission denied). Check that the "
                    "login user may read it."
                )
            data = self.files[path]  # an open file keeps its content if it is replaced
            limit, error = self._failures.pop(path, (len(data), None))
        for start in range(0, min(limit, len(data)), chunk_size):
            yield data[start : min(start + chunk_size, limit)]
        if error is not None:
            raise error

    def write_file(
        self, path: str, chunks: Iterable[bytes], *, progress: Progress | None = None
    ) -> int:
        folder, name = posixpath.split(path)
        temp = posixpath.join(folder, f".{name}.part-{secrets.token_hex(6)}")
        with self._lock:
            self._check_open()
            if not name or self._is_folder(path):
                raise self._refused(f"Cannot write {path} on {self.host}: it is a folder.")
            if not self._is_folder(folder):
                raise self._refused(
                    f"Cannot write {path} on {self.host}: the folder {folder} does not exist. "
                    "Check the path, or create the folder first."
                )
            if _folder_key(folder) in self._denied:
                raise self._refused(
                    f"{self.host} refused to write {path} (permission denied). Check that the "
                    f"login user may create files in {folder}."
                )
            limit, error = self._failures.pop(path, (None, None))
            self.files[temp] = b""
        written = bytearray()
        try:
            for chunk in chunks:
                if limit is not None and error is not None and len(written) + len(chunk) > limit:
                    written += chunk[: limit - len(written)]
                    self._store(temp, written)
                    raise error
                if chunk:
                    written += chunk
                    self._store(temp, written)
                    if progress is not None:
                        progress(len(written))
            if error is not None:
                raise error
            with self._lock:
                self.files[path] = self.files.pop(temp)  # the rename: never seen half written
        except BaseException as exc:
            if not isinstance(exc, ConnectionLost):
                with self._lock:
                    self.files.pop(temp, None)
            raise
        return len(written)

    def close(self) -> None:
        self.closed = True

    def reopen(self) -> None:
        """Let a closed twin serve a new connection (the connector does this on connect)."""
        self.closed = False

    def _check_open(self) -> None:
        if self.closed:
            raise ConnectionLost(
                f"The connection to {self.host} is closed: connect again.", host=self.host
            )

    def _refused(self, message: str) -> FileTransferFailed:
        return FileTransferFailed(message, host=self.host)

    def _is_folder(self, path: str) -> bool:
        path = path.rstrip("/")
        if path in ("", "."):
            return True  # the root, or the login's own folder for a relative path
        inside = path + "/"
        return path in self._folders or any(
            other.startswith(inside) for other in (*self.files, *self._folders)
        )

    def _store(self, path: str, content: bytearray) -> None:
        with self._lock:
            self.files[path] = bytes(content)

    def _match(self, command: str) -> ScriptedCommand:
        for scripted in reversed(self._script):
            if scripted.pattern.search(command):
                return scripted
        return ScriptedCommand(
            pattern=re.compile(re.escape(command)),
            stderr=f"sh: {command}: not found\n",
            exit_code=127,
        )


def _folder_key(path: str) -> str:
    """`/a/` and `/a` are one folder; `/` stays the root and `` the login's own folder."""
    return path.rstrip("/") or path[:1]


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

    def close(self) -> None:
        """The twin keeps nothing open between runs."""
