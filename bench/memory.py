"""Memory and throughput of a step that prints 1 GiB, over SSH (`ParamikoShell`) and locally
(`LocalShell`).

Each variant is one run of a one-step plan through `Runner.execute`, as the bot runs a step: the
real connector or local shell, a `SqlRunStore` on a SQLite file, every output line handed to the
run's observer. The bot keeps a bounded head and tail of a step's output, so its resident memory
should not follow the output's size: the target is a growth under 50 MB. Growth is read from
/proc/self/status: the peak (VmHWM, reset before each variant through /proc/self/clear_refs)
and what stays afterwards (VmRSS), both against VmRSS just before the run. Each SSH variant also
counts the key re-exchanges on its connection: the bot's transport never starts one, so only
sshd's `RekeyLimit` can. `--diagnose` runs the SSH variants again against an sshd that re-keys
every 256 MiB, so that re-exchanges happen while the step prints.
"""

from __future__ import annotations

import argparse
import gc
import logging
import tempfile
import time
from contextlib import ExitStack, closing
from dataclasses import dataclass, replace
from pathlib import Path

import tests.hostkit.sshd
from adapters.clock import SystemClock
from adapters.local import LocalShell
from adapters.memory.docker import MemoryDockerConnector, MemoryRegistry
from adapters.memory.http import MemoryHttpCheck
from adapters.sql_store import SqlRunStore, upgrade_schema
from adapters.ssh import ParamikoConnector
from bench.conditions import print_conditions, print_load_after
from bot.domain.inventory import Environment, Instance, Inventory
from bot.domain.plan import PlannedStep
from bot.domain.run import Phase, RunState
from bot.domain.runbook import ShellAction
from bot.engine.runner import Runner, SilentObserver
from bot.engine.session import Ports
from tests.factories import make_plan, make_step
from tests.hostkit.services import ensure_host_user
from tests.hostkit.sshd import SshServer

GIB = 1024**3
TARGET_MB = 50.0
OUTPUTS = {
    "100-byte lines": "yes \"$(printf '%099d' 0)\" | head -c 1G",  # 99 digits and a newline
    "one line, no newline": "head -c 1G /dev/zero | tr '\\0' x",
}
STEP_TIMEOUT = 900.0
REKEY_MIB = 256  # sshd's RekeyLimit in the diagnosis: four re-exchanges in 1 GiB
REKEYING = f"sshd RekeyLimit {REKEY_MIB}M"
WIDTH = 59  # of the variant column


class RekeyingServer(SshServer):
    """A diagnosis: the test kit's sshd with `RekeyLimit` added to its config, so that sshd starts
    key re-exchanges while a step prints (by its default, none happen here: see docs)."""

    def _launch(self, timeout: float) -> bool:
        config = tests.hostkit.sshd._CONFIG  # read by the kit's `_launch` when it writes the file
        tests.hostkit.sshd._CONFIG = config + f"RekeyLimit {REKEY_MIB}M\n"
        try:
            return super()._launch(timeout)
        finally:
            tests.hostkit.sshd._CONFIG = config


class KeyExchanges(logging.Handler):
    """Counts, from the lines paramiko's transport logger writes, the key exchanges completed in
    this process (the first one of each connection included) and those that paramiko itself
    asked for (its REKEY_BYTES or REKEY_PACKETS reached; the bot's transport raises both)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.done = self.asked = 0
        logger = logging.getLogger("paramiko.transport")
        logger.setLevel(logging.DEBUG)  # about 40 records a connection: no cost worth a figure
        logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message == "=== End of kex handshake ===":
            self.done += 1
        elif message.startswith("Rekeying (hit "):
            self.asked += 1


def status_kib(field: str) -> int:
    """A `kB` field of /proc/self/status, e.g. VmRSS or VmHWM."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak() -> None:
    """Make VmHWM start again from the current VmRSS (Linux 4.0 and later)."""
    Path("/proc/self/clear_refs").write_text("5")


class LineCount(SilentObserver):
    """Counts the lines the runner hands on, as a chat observer would receive them."""

    def __init__(self) -> None:
        self.lines = 0

    def output_line(self, run: object, planned: object, line: str) -> None:
        self.lines += 1


@dataclass(frozen=True)
class Measured:
    before: float  # MB resident just before the run
    peak: float  # MB above `before` at the highest
    kept: float  # MB above `before` once the run has ended
    seconds: float
    received: int  # bytes of output the step saw
    lines: int  # lines handed to the observer
    rekeys: int | None  # key re-exchanges on the run's connection; None: no SSH
    asked: int  # how many of them the client asked for
    error: str  # why the run did not succeed, if it did not

    @property
    def mib_s(self) -> float:
        return self.received / 2**20 / self.seconds


def run_step(
    store: SqlRunStore,
    instance: Instance,
    ports: Ports,
    command: str,
    exchanges: KeyExchanges,
    size: int = GIB,
) -> Measured:
    """One run of a plan with the one step; memory and time around `Runner.execute`."""
    step = make_step("flood", action=ShellAction(command=command), timeout=STEP_TIMEOUT)
    plan = make_plan(
        steps=(PlannedStep(number=1, step=step, preview=command),),
        rollback=(),
        environment="bench",
        instance=instance.name,
    )
    inventory = Inventory(environments={"bench": Environment(name="bench", instances=(instance,))})
    observer = LineCount()
    runner = Runner(store, inventory, ports, observer)
    at = ports.clock.now()
    run_id = store.create(plan, requested_by="U-asker", at=at).id
    store.transition(run_id, RunState.PLANNED, RunState.AWAITING_APPROVAL, at=at, actor="bot")
    store.transition(run_id, RunState.AWAITING_APPROVAL, RunState.APPROVED, at=at, actor="U-ok")
    gc.collect()
    before = status_kib("VmRSS")
    exchanged, asked = exchanges.done, exchanges.asked
    reset_peak()
    start = time.perf_counter()
    run = runner.execute(run_id, actor="U-ok")
    seconds = time.perf_counter() - start
    exchanged, asked = exchanges.done - exchanged, exchanges.asked - asked
    peak, after = status_kib("VmHWM"), status_kib("VmRSS")
    (result,) = [r for r in store.steps(run_id) if r.phase is Phase.UPGRADE]
    received = result.result.stdout.total_bytes if result.result else 0
    error = (
        "" if run.state is RunState.SUCCEEDED else f"run ended {run.state.value}: {result.error}"
    )
    if not error and received != size:
        error = f"the step printed {received} bytes, not {size}"
    return Measured(
        before=before * 1024 / 1e6,
        peak=max(0, peak - before) * 1024 / 1e6,
        kept=(after - before) * 1024 / 1e6,
        seconds=seconds,
        received=received,
        lines=observer.lines,
        rekeys=None if instance.local else exchanged - 1,  # the run connects once
        asked=asked,
        error=error,
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help=f"also: the SSH variants again against an sshd rekeying every {REKEY_MIB} MiB",
    )
    args = parser.parse_args()
    print_conditions()
    ensure_host_user()
    exchanges = KeyExchanges()
    results: dict[str, Measured] = {}
    with ExitStack() as stack:
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-memory-"))
        server = stack.enter_context(SshServer())
        url = f"sqlite:///{workdir}/bot.db"
        upgrade_schema(url)
        store = stack.enter_context(closing(SqlRunStore(url)))
        ports = Ports(
            ssh=ParamikoConnector(),
            docker=MemoryDockerConnector(),
            registry=MemoryRegistry(),
            http=MemoryHttpCheck(),
            clock=SystemClock(),
            local_shell=LocalShell,
        )
        product = make_plan().product
        remote = Instance(name="remote", environment="bench", product=product, ssh=server.target())
        local = Instance(name="local", environment="bench", product=product, local=True)
        for instance in (local, remote):  # imports, the store's first statements, caches
            if warm := run_step(store, instance, ports, "echo warm-up", exchanges, size=8).error:
                raise RuntimeError(f"the warm-up on {instance.name} failed: {warm}")
        for shape, command in OUTPUTS.items():
            for label, instance in (("ParamikoShell", remote), ("LocalShell", local)):
                results[f"{label}, {shape}"] = run_step(store, instance, ports, command, exchanges)
        if args.diagnose:
            rekeying = stack.enter_context(RekeyingServer())
            remote = replace(remote, ssh=rekeying.target())
            for shape, command in OUTPUTS.items():
                name = f"ParamikoShell, {REKEYING}, {shape}"
                results[name] = run_step(store, remote, ports, command, exchanges)
    report(results)
    print_load_after()


def report(results: dict[str, Measured]) -> None:
    print("a step printing 1 GiB, run by Runner.execute (SqlRunStore on SQLite, every line handed")
    print("to the observer); resident memory of this process against VmRSS just before the run\n")
    head = f"{'variant':<{WIDTH}}{'RSS before':>11}{'peak +':>9}{'kept +':>9}"
    print(head + f"{'s':>7}{'MiB/s':>7}{'lines':>12}{'rekeys':>8}")
    for name, r in results.items():
        rekeys = "-" if r.rekeys is None else f"{r.rekeys}/{r.asked}"
        print(
            f"{name:<{WIDTH}}{r.before:>8.1f} MB{r.peak:>6.1f} MB{r.kept:>6.1f} MB"
            f"{r.seconds:>7.1f}{r.mib_s:>7.1f}{r.lines:>12,}{rekeys:>8}"
        )
        if r.error:
            print(f"  ! after {r.received / 2**20:.0f} MiB: {r.error}")
    worst = max(r.peak for r in results.values())
    met = "met" if worst < TARGET_MB else "NOT met"
    failed = [name for name, r in results.items() if r.error]
    if failed and worst < TARGET_MB:
        met += f", but {len(failed)} of {len(results)} runs failed (their growth is until then)"
    print(f"\ntarget: growth under {TARGET_MB:g} MB: {met} (largest peak growth {worst:.1f} MB)")
    print("(MB: 10^6 bytes; kept below 0: the process gave memory back; lines: how many the")
    print(" observer was handed, a long line in 16 KiB pieces; rekeys: key re-exchanges on the")
    print(" run's connection after its first / how many of them the bot's side asked for)")
    if failed:
        print(f"did not succeed: {', '.join(failed)} (see above)")
    if any(REKEYING in name for name in results):
        print(f"{REKEYING}: an sshd that rekeys every {REKEY_MIB} MiB (a diagnosis, see --help)")


if __name__ == "__main__":
    main()
