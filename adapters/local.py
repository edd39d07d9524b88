"""The Shell port on the bot's own machine: `/bin/sh -c` in a process group of its own, and files
written next to their target and renamed into place, as over SFTP."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import selectors
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from bot.domain.errors import ConnectionLost, FileTransferFailed, StepTimeout
from bot.domain.output import CommandResult, LineSink, OutputCollector, Stream
from bot.domain.ports import Progress

_READ_BYTES = 64 * 1024


class LocalShell:
    """Runs commands on this machine with the same contract as a remote shell.

    Each command gets a new session (so a process group) of its own: a timeout or an early stop
    ends the whole group, including anything the command started in the background.
    """

    host = "localhost"

    def __init__(
        self,
        *,
        cwd: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        kill_grace: float = 2.0,
    ) -> None:
        self._cwd = cwd
        self._env = {**os.environ, **env} if env else None
        self._kill_grace = kill_grace
        self._closed = False

    def run(
        self, command: str, *, timeout: float, on_line: LineSink | None = None
    ) -> CommandResult:
        self._check_open()
        started_at = datetime.now(UTC)
        start = time.monotonic()
        deadline = start + timeout
        collector = OutputCollector(on_line)
        try:
            process = subprocess.Popen(
                ["/bin/sh", "-c", command],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self._cwd,
                env=self._env,
                start_new_session=True,
            )
        except OSError as exc:
            raise ConnectionLost(
                f"Could not start /bin/sh on {self.host} (in {self._cwd or os.getcwd()}): "
                f"{exc.strerror}. Check that the directory exists.",
                host=self.host,
            ) from exc
        try:
            ended = _pump(process, collector, deadline)
            if ended == "finished":
                try:
                    process.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    ended = "timeout"  # it closed its output but kept running
            if ended != "finished":
                _end_group(process, self._kill_grace)
        except BaseException:
            _end_group(process, self._kill_grace)  # a failing sink must not leave it running
            raise
        finally:
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()
        out, err = collector.finish()
        code = process.returncode
        result = CommandResult(
            host=self.host,
            command=command,
            # a shell killed by a signal has no exit status, as over SSH (sshd sends none)
            exit_code=code if ended == "finished" and code >= 0 else None,
            stdout=out,
            stderr=err,
            started_at=started_at,
            duration=time.monotonic() - start,
            stopped_early=ended == "stopped",
        )
        if ended == "timeout":
            raise StepTimeout(
                f"The command on {self.host} ran past its {timeout:g}s timeout and was stopped.",
                host=self.host,
                result=result,
            )
        return result

    def read_file(self, path: str, *, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        """Yield the file in chunks of at most `chunk_size` bytes; a relative path is taken
        from the shell's directory. Errors surface on iteration."""
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, not {chunk_size}")
        self._check_open()
        with self._translated(path, writing=False), open(self._resolve(path), "rb") as source:
            while data := source.read(chunk_size):
                yield data

    def write_file(
        self, path: str, chunks: Iterable[bytes], *, progress: Progress | None = None
    ) -> int:
        """Write to `.<name>.part-<random>` in the target's folder, flush it to disk, rename it
        into place. Errors raised by `chunks` or `progress` pass through as they are."""
        self._check_open()
        target = self._resolve(path)
        temp = target.with_name(f".{target.name}.part-{secrets.token_hex(6)}")
        with self._translated(path, writing=True):
            # a new file of our own (never someone's symlink); 0666 less the umask, as sftp does
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        written = 0
        with os.fdopen(fd, "wb") as out:
            try:
                for chunk in chunks:
                    if chunk:
                        with self._translated(path, writing=True):
                            out.write(chunk)
                        written += len(chunk)
                        if progress is not None:
                            progress(written)
                with self._translated(path, writing=True):
                    out.flush()
                    # on disk before a name points at it: a crash must not leave an empty file
                    os.fsync(out.fileno())
                    os.replace(temp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    out.close()  # flushing what is left may fail again (a full disk)
                with contextlib.suppress(OSError):
                    temp.unlink()
                raise
        return written

    def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise ConnectionLost("This local shell is closed: open a new one.", host=self.host)

    def _resolve(self, path: str) -> Path:
        return Path(self._cwd or ".") / path

    @contextlib.contextmanager
    def _translated(self, path: str, *, writing: bool) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            message = _explain(self.host, path, exc, writing=writing)
            raise FileTransferFailed(message, host=self.host) from exc


def _explain(host: str, path: str, exc: OSError, *, writing: bool) -> str:
    """What went wrong with a file, and what to check."""
    folder = os.path.dirname(path) or "."
    verb = "write" if writing else "read"
    if exc.errno in (errno.ENOENT, errno.ENOTDIR) and writing:
        return (
            f"Cannot write {path} on {host}: the folder {folder} does not exist. Check the "
            "path, or create the folder first."
        )
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return f"{path} does not exist on {host}. Check the path."
    if exc.errno in (errno.EACCES, errno.EPERM):
        where = f"create files in {folder} (`ls -ld {folder}`)" if writing else f"read {path}"
        return f"{host} refused to {verb} {path} (permission denied). Check that we may {where}."
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"Could not write {path} on {host}: no space left. Free some space "
            f"(`df -h {folder}`) and retry; {path} is left as it was."
        )
    if exc.errno == errno.EISDIR:
        return f"{path} on {host} is a folder, not a file. Check the path."
    return f"Could not {verb} {path} on {host} ({exc.strerror or exc}). Check the path."


def _pump(process: subprocess.Popen[bytes], collector: OutputCollector, deadline: float) -> str:
    """Read both pipes as data comes until both close ("finished"), the sink asks to stop
    ("stopped") or the deadline passes ("timeout")."""
    streams: dict[IO[bytes] | None, Stream] = {
        process.stdout: Stream.STDOUT,
        process.stderr: Stream.STDERR,
    }
    with selectors.DefaultSelector() as selector:
        for pipe, stream in streams.items():
            if pipe is not None:
                selector.register(pipe, selectors.EVENT_READ, stream)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout"
            for key, _ in selector.select(remaining):
                chunk = os.read(key.fd, _READ_BYTES)
                if not chunk:
                    selector.unregister(key.fileobj)
                elif collector.feed(key.data, chunk):
                    return "stopped"
    return "finished"


def _end_group(process: subprocess.Popen[bytes], grace: float) -> None:
    """TERM the command's process group, give it `grace` seconds, then KILL what is left."""
    group = process.pid  # the session leader's pid is the group id (start_new_session)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            break
        until = time.monotonic() + wait
        while time.monotonic() < until:
            process.poll()  # reap the shell so it does not count as alive
            if not _group_alive(group):
                process.wait()
                return
            time.sleep(0.01)
    process.wait()


def _group_alive(group: int) -> bool:
    """Whether any process of `group` still runs. Zombies do not count: orphans in this group are
    reaped by init, which may take its time (or never happen in a container)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        if int(fields[2]) == group and fields[0] != "Z":
            return True
    return False
