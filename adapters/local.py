"""The Shell port on the bot's own machine: `/bin/sh -c` in a process group of its own."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from bot.domain.errors import ConnectionLost, StepTimeout
from bot.domain.output import CommandResult, LineSink, OutputCollector, Stream

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
        if self._closed:
            raise ConnectionLost("This local shell is closed: open a new one.", host=self.host)
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

    def close(self) -> None:
        self._closed = True


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
