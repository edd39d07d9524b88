"""The Shell port's contract, run against the memory twin, the local shell and SSH (real sshd).

Each test describes a program by its behaviour (`Program`) and asks the kit to `arrange` it: the
real shells get a small script, the twin gets a scripted response. For the real shells the kit
also tells whether any process of that program still runs.
"""

from __future__ import annotations

import re
import shlex
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.local import LocalShell
from adapters.memory.shell import MemoryShell, MemoryShellConnector
from adapters.ssh import ParamikoConnector
from bot.domain.errors import ConnectionLost, HostKeyRejected, HostUnreachable, StepTimeout
from bot.domain.inventory import SshTarget
from bot.domain.output import HEAD_BYTES, TAIL_BYTES, Stream
from bot.domain.ports import Shell
from tests.hostkit.sshd import SshServer

SLEEP = shutil.which("sleep") or "/bin/sleep"
KILL_GRACE = 0.3  # short, so the tests of commands that ignore SIGTERM stay quick


@dataclass(frozen=True, kw_only=True)
class Program:
    """What a command does: prints these lines, then runs on for `seconds`, then exits."""

    stdout: tuple[str, ...] = ()
    stderr: tuple[str, ...] = ()
    exit_code: int = 0
    seconds: float = 0.0
    detach_output: bool = False  # closes stdout and stderr before running on
    reads_stdin: bool = False  # reads its input to the end first
    ignores_term: bool = False  # it and its children ignore SIGTERM: only SIGKILL ends them

    @property
    def stdout_text(self) -> str:
        return "".join(line + "\n" for line in self.stdout)

    @property
    def stderr_text(self) -> str:
        return "".join(line + "\n" for line in self.stderr)


class ShellKit:
    """A shell under test plus the means to arrange programs on it and look for their processes."""

    def __init__(self, kind: str, shell: Shell, host: str, scripts: Path) -> None:
        self.kind = kind
        self.shell = shell
        self.host = host
        self._scripts = scripts
        self._count = 0

    @property
    def real(self) -> bool:
        return self.kind != "memory"

    def arrange(self, program: Program) -> tuple[str, str]:
        """Return the command that behaves like `program`, and a marker found in the command
        line of each of its processes."""
        self._count += 1
        marker = f"prog-{self.kind}-{self._count}-{time.monotonic_ns()}"
        if isinstance(self.shell, MemoryShell):
            command = f"run {marker}"
            self.shell.on(
                f"^{re.escape(command)}$",
                stdout=program.stdout_text,
                stderr=program.stderr_text,
                exit_code=program.exit_code,
                seconds=program.seconds,
            )
            return command, marker
        script = self._scripts / f"{marker}.sh"
        lines = ["#!/bin/sh"]
        if program.ignores_term:
            lines.append("trap '' TERM")  # ignored signals stay ignored in children
        if program.reads_stdin:
            lines.append("cat >/dev/null")
        for text, redirect in ((program.stdout_text, ""), (program.stderr_text, " >&2")):
            if text:
                lines += [f"cat{redirect} <<'END-{marker}'", text + f"END-{marker}"]
        if program.detach_output:
            lines.append("exec >/dev/null 2>&1")
        if program.seconds:
            # a sleep whose command line carries the marker, so we can tell if it outlived us
            (self._scripts / f"sleep-{marker}").symlink_to(SLEEP)
            lines.append(f"{self._scripts}/sleep-{marker} {program.seconds}")
        lines.append(f"exit {program.exit_code}")
        script.write_text("\n".join(lines) + "\n")
        return f"sh {script}", marker

    def argv_printer(self, values: list[str]) -> str:
        """A command that prints each of its arguments as `<arg>` on a line, given `values`
        quoted the way runbook values are substituted."""
        command = f"sh {self._scripts}/print-args.sh " + " ".join(shlex.quote(v) for v in values)
        if isinstance(self.shell, MemoryShell):
            # the twin models the host's word splitting with a POSIX-mode lexer
            printed = "".join(f"<{arg}>\n" for arg in shlex.split(command)[2:])
            self.shell.on(f"^{re.escape(command)}$", stdout=printed)
        return command

    def running(self, marker: str) -> list[str]:
        """Processes (not zombies) whose command line contains `marker`."""
        if not self.real:
            return []
        found = []
        for proc in Path("/proc").iterdir():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if marker in cmdline and state != "Z":
                found.append(f"{proc.name} {state} {cmdline}")
        return found


@pytest.fixture(scope="module")
def scripts() -> Iterator[Path]:
    # readable by the SSH login user, unlike pytest's private tmp_path
    folder = Path(tempfile.mkdtemp(prefix="upgradebot-contract-"))
    folder.chmod(0o755)
    (folder / "print-args.sh").write_text('for a in "$@"; do printf \'<%s>\\n\' "$a"; done\n')
    canaries = folder / "canaries"
    canaries.mkdir()
    canaries.chmod(0o777)
    yield folder
    shutil.rmtree(folder)


@pytest.fixture(
    params=[
        "memory",
        "local",
        pytest.param("ssh", marks=pytest.mark.services),
    ]
)
def kit(request: pytest.FixtureRequest, scripts: Path) -> Iterator[ShellKit]:
    shell: Shell
    if request.param == "memory":
        shell = MemoryShell("memory-host")
        host = "memory-host"
    elif request.param == "local":
        shell, host = LocalShell(kill_grace=KILL_GRACE), "localhost"
    else:
        server: SshServer = request.getfixturevalue("ssh_server_module")
        shell = ParamikoConnector(kill_grace=KILL_GRACE).connect(server.target())
        host = str(server.target())
    yield ShellKit(request.param, shell, host, scripts)
    shell.close()


def test_stdout_stderr_and_exit_code(kit: ShellKit) -> None:
    command, _ = kit.arrange(Program(stdout=("hello", "world"), stderr=("warn",), exit_code=3))
    result = kit.shell.run(command, timeout=10)
    assert result.stdout.text == "hello\nworld\n"
    assert result.stderr.text == "warn\n"
    assert result.exit_code == 3
    assert not result.ok  # a non-zero exit is a result, not an exception
    assert (result.command, result.host) == (command, kit.host)
    assert result.started_at.tzinfo is not None
    assert 0 <= result.duration < 10
    assert not result.stopped_early


def test_a_successful_command_is_ok(kit: ShellKit) -> None:
    command, _ = kit.arrange(Program(stdout=("fine",)))
    result = kit.shell.run(command, timeout=10)
    assert (result.exit_code, result.ok, result.stderr.text) == (0, True, "")


def test_an_unknown_command_exits_127(kit: ShellKit) -> None:
    result = kit.shell.run("no-such-command-upgradebot", timeout=10)
    assert result.exit_code == 127
    assert "no-such-command-upgradebot" in result.stderr.text
    assert "not found" in result.stderr.text


def test_a_command_reading_input_gets_none(kit: ShellKit) -> None:
    command, _ = kit.arrange(Program(stdout=("after input",), reads_stdin=True))
    result = kit.shell.run(command, timeout=5)
    assert (result.stdout.text, result.exit_code) == ("after input\n", 0)


def test_many_commands_in_a_row(kit: ShellKit) -> None:
    for i in range(15):
        command, _ = kit.arrange(Program(stdout=(f"run {i}",), exit_code=i % 3))
        result = kit.shell.run(command, timeout=10)
        assert (result.stdout.text, result.exit_code) == (f"run {i}\n", i % 3)


def test_large_output_is_kept_bounded(kit: ShellKit) -> None:
    lines = tuple(f"{i:06d} " + "x" * 90 for i in range(1500))  # 145,500 bytes
    command, _ = kit.arrange(Program(stdout=lines, stderr=("small",)))
    result = kit.shell.run(command, timeout=30)
    full = Program(stdout=lines).stdout_text
    out = result.stdout
    assert (out.total_bytes, out.total_lines) == (len(full), 1500)
    assert out.truncated
    assert out.head == full[:HEAD_BYTES]
    assert len(out.tail.encode()) <= TAIL_BYTES
    assert full.endswith(out.tail)
    assert out.tail.splitlines()[0] in lines  # the kept tail starts at a line
    assert out.last_lines(1) == [lines[-1]]
    assert result.stderr.text == "small\n"


def test_on_line_gets_every_line_in_order(kit: ShellKit) -> None:
    program = Program(
        stdout=tuple(f"out {i}" for i in range(300)), stderr=tuple(f"err {i}" for i in range(50))
    )
    command, _ = kit.arrange(program)
    seen: list[tuple[Stream, str]] = []
    result = kit.shell.run(command, timeout=10, on_line=lambda s, line: seen.append((s, line)))
    assert [line for s, line in seen if s is Stream.STDOUT] == list(program.stdout)
    assert [line for s, line in seen if s is Stream.STDERR] == list(program.stderr)
    assert (result.exit_code, result.stopped_early) == (0, False)


def test_on_line_returning_true_stops_the_command(kit: ShellKit) -> None:
    command, marker = kit.arrange(Program(stdout=("starting", "READY", "after"), seconds=30))
    seen: list[str] = []

    def until_ready(_stream: Stream, line: str) -> bool:
        seen.append(line)
        return line == "READY"

    result = kit.shell.run(command, timeout=20, on_line=until_ready)
    assert seen == ["starting", "READY"]
    assert result.stopped_early
    assert result.exit_code is None
    assert result.ok
    assert result.duration < 10
    assert kit.running(marker) == []


def test_a_failing_sink_ends_the_command_and_propagates(kit: ShellKit) -> None:
    command, marker = kit.arrange(Program(stdout=("boom",), seconds=30))

    def broken(_stream: Stream, _line: str) -> bool:
        raise RuntimeError("bug in the sink")

    with pytest.raises(RuntimeError, match="bug in the sink"):
        kit.shell.run(command, timeout=20, on_line=broken)
    assert kit.running(marker) == []


def test_stopping_at_the_last_line_of_a_finished_command(kit: ShellKit) -> None:
    command, _ = kit.arrange(Program(stdout=("done",), exit_code=1))
    result = kit.shell.run(command, timeout=10, on_line=lambda _s, line: line == "done")
    assert result.stopped_early
    assert result.exit_code is None


@pytest.mark.parametrize("detach_output", [False, True], ids=["printing", "detached"])
def test_timeout_raises_with_the_partial_output_and_ends_the_command(
    kit: ShellKit, detach_output: bool
) -> None:
    command, marker = kit.arrange(
        Program(stdout=("started",), stderr=("working",), seconds=30, detach_output=detach_output)
    )
    with pytest.raises(StepTimeout) as caught:
        kit.shell.run(command, timeout=0.5)
    error = caught.value
    assert error.host == kit.host
    assert error.result is not None
    assert error.result.command == command
    assert error.result.stdout.text == "started\n"
    assert error.result.stderr.text == "working\n"
    assert error.result.exit_code is None
    assert 0.5 <= error.result.duration < 10
    assert kit.running(marker) == []


def test_a_command_ignoring_sigterm_is_killed(kit: ShellKit) -> None:
    command, marker = kit.arrange(Program(stdout=("stubborn",), seconds=30, ignores_term=True))
    with pytest.raises(StepTimeout) as caught:
        kit.shell.run(command, timeout=0.3)
    assert caught.value.result is not None
    assert caught.value.result.stdout.text == "stubborn\n"
    assert kit.running(marker) == []


def test_a_quoted_value_arrives_as_one_literal_argument(kit: ShellKit, scripts: Path) -> None:
    canary = scripts / "canaries" / f"{kit.kind}-ran"
    values = [
        "; rm -rf /",
        f"$(touch {canary})",
        f"`touch {canary}`; touch {canary}",
        'it\'s "quoted" \\ * ~ $HOME',
        "  spaced  ",
        "",
    ]
    result = kit.shell.run(kit.argv_printer(values), timeout=10)
    assert result.stdout.text == "".join(f"<{value}>\n" for value in values)
    assert result.exit_code == 0
    assert not canary.exists()


def test_a_shell_killed_by_a_signal_has_no_exit_code(kit: ShellKit) -> None:
    command = "echo bye; kill -9 $$"
    if isinstance(kit.shell, MemoryShell):
        kit.shell.on(f"^{re.escape(command)}$", stdout="bye\n", exit_code=None)
    result = kit.shell.run(command, timeout=10)
    assert (result.stdout.text, result.exit_code, result.ok) == ("bye\n", None, False)
    assert kit.running(command) == []


def test_a_closed_shell_refuses_to_run(kit: ShellKit) -> None:
    kit.shell.close()
    kit.shell.close()  # idempotent
    with pytest.raises(ConnectionLost):
        kit.shell.run("true", timeout=5)


# The twin's own controls, which the engine's unit tests rely on.


def test_the_twin_answers_with_the_last_matching_registration() -> None:
    shell = (
        MemoryShell("h").on(r"^systemctl ", stdout="generic\n").on(r"restart myst$", exit_code=4)
    )
    assert shell.run("systemctl restart myst", timeout=5).exit_code == 4
    assert shell.run("systemctl status myst", timeout=5).stdout.text == "generic\n"
    assert shell.commands == ["systemctl restart myst", "systemctl status myst"]


def test_the_twin_runs_on_a_simulated_clock() -> None:
    epoch = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    shell = MemoryShell("h", epoch=epoch).on("^backup$", stdout="Backed up to /b/1\n", seconds=3600)
    start = time.monotonic()
    first = shell.run("backup", timeout=7200)
    with pytest.raises(StepTimeout) as caught:
        shell.run("backup", timeout=60)
    assert time.monotonic() - start < 1  # nobody waited an hour
    assert (first.started_at, first.duration) == (epoch, 3600)
    partial = caught.value.result
    assert partial is not None
    assert partial.stdout.text == "Backed up to /b/1\n"
    assert (partial.started_at, partial.duration) == (epoch + timedelta(hours=1), 60)
    assert shell.elapsed == 3660


def test_the_twin_can_lose_the_connection_mid_step() -> None:
    shell = MemoryShell("h").on("^upgrade$", stdout="step 1\n", lose_connection=True)
    with pytest.raises(ConnectionLost) as caught:
        shell.run("upgrade", timeout=5)
    assert caught.value.result is not None
    assert caught.value.result.stdout.text == "step 1\n"
    assert caught.value.result.exit_code is None


def target(host: str, user: str = "ops") -> SshTarget:
    return SshTarget(host=host, user=user, key_file=Path("k"), known_hosts=Path("kh"))


def test_the_twin_connector_finds_shells_by_address_or_host() -> None:
    connector = MemoryShellConnector()
    by_host = connector.shell("myst-1")
    by_address = connector.shell("root@myst-1:22")
    assert connector.connect(target("myst-1")) is by_host
    assert connector.connect(target("myst-1", user="root")) is by_address
    by_host.close()
    assert connector.connect(target("myst-1")).run("true", timeout=1).exit_code == 127
    with pytest.raises(HostUnreachable):
        connector.connect(target("unknown"))
    assert [t.host for t in connector.connects] == ["myst-1", "myst-1", "myst-1", "unknown"]


def test_the_twin_connector_fails_as_told_until_healed() -> None:
    connector = MemoryShellConnector({"myst-1": MemoryShell("myst-1")})
    connector.fail("myst-1", HostKeyRejected("the key changed", host="myst-1"))
    with pytest.raises(HostKeyRejected, match="the key changed"):
        connector.connect(target("myst-1"))
    connector.fail("myst-1", None)
    assert connector.connect(target("myst-1")).host == "myst-1"
