"""Per-step orchestration overhead: ten `echo step N` steps on one host, with and without the bot.

All SSH variants talk to one sshd on loopback started with the test kit's `SshServer` (run as root).
The bot runs as wired (`bot.wiring.build_ports`): it keeps a host's connection open between runs
(`ssh.keep_open`), so each timed run takes the connection the run before gave back, after sshd
answered a keepalive on it; a second variant, with `keep_open: 0s`, connects inside every run.
Raw paramiko, OpenSSH and ansible-playbook (a peer, from a throwaway venv: `bench.ansible_peer`)
connect before timing. The bot's store and SSH calls are timed too, to show where `execute` spends
its time, and so are its durable commits. The store is on a SQLite file, or with `--postgres` on
the test kit's PostgreSQL. `--diagnose` adds what would be left of the bot's time without its
durable writes (the in-memory store twin), with the leanest durable journal (the twin, each write
then committed bare with `sqlite3`), and with the store's SQLite commits not made durable
(`synchronous=NORMAL`); and what one bare durable commit costs on this disk.
"""

from __future__ import annotations

import argparse
import dataclasses
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import paramiko  # noqa: TID251 (raw paramiko is the baseline the bot is measured against)
from pydantic import TypeAdapter
from sqlalchemy import Connection, event

from adapters.clock import SystemClock
from adapters.memory.docker import MemoryDockerConnector, MemoryRegistry
from adapters.memory.http import MemoryHttpCheck
from adapters.memory.store import MemoryRunStore
from adapters.sql_engine import WRITE_OPTION, create_store_engine
from adapters.sql_store import SqlRunStore, upgrade_schema
from adapters.ssh import _AEAD, ParamikoConnector
from adapters.ssh_pool import KeptConnections
from bench import ansible_peer
from bench.conditions import print_conditions, print_load_after
from bot.domain.inventory import Environment, Instance, Inventory, SshTarget
from bot.domain.output import CommandResult
from bot.domain.plan import PlannedStep
from bot.domain.ports import RunStore, Shell
from bot.domain.run import Run, RunState, StepResult
from bot.domain.runbook import ShellAction
from bot.engine.runner import Runner
from bot.engine.session import Ports
from tests.factories import make_plan, make_step
from tests.hostkit.databases import postgres_schema
from tests.hostkit.services import ensure_host_user
from tests.hostkit.services import up as services_up
from tests.hostkit.sshd import SshServer

STEPS = 10
COMMANDS = tuple(f"echo step {n}" for n in range(1, STEPS + 1))
TARGET_RATIO = 1.2
BOT, BASELINE = "bot (Runner.execute)", "paramiko, TCP_NODELAY"
COLD = "bot, keep_open: 0s (connects in every run)"
CONNECTING = "paramiko, TCP_NODELAY, connecting"  # the connection inside the clock, as COLD's
TWIN = "bot, in-memory store twin"  # a diagnosis: MemoryRunStore in place of SqlRunStore
LEAN = "bot, twin + a bare durable commit a write"  # a diagnosis: DurableTwin
NORMAL = "bot, SqlRunStore with synchronous=NORMAL"  # a diagnosis: not durable at a power cut
GCM = "paramiko, TCP_NODELAY, AES-GCM"  # a diagnosis: the baseline with the bot's cipher
NOT_GCM = [name for name in paramiko.Transport._preferred_ciphers if name not in _AEAD]
COMMITS = "store: durable commits"  # counted, not timed: their time is in the store's parts
WIDTH = 52  # of the variant column
POSTGRES_HELP = "the bot's store on the test kit's PostgreSQL instead of a SQLite file"
Work = Callable[[], object]  # runs the ten commands once
Ready = Callable[[], Work]  # prepares one repetition, returns the part to be timed


class Tally:
    """The seconds of each call made inside `execute`, by part, one dict per run, and how many
    write transactions the store committed (`COMMITS`, in a dict of its own per run)."""

    def __init__(self) -> None:
        self.runs: list[dict[str, list[float]]] = []
        self.counts: list[dict[str, int]] = []
        self.recording = False

    def begin_run(self) -> None:
        self.runs.append({})
        self.counts.append({})
        self.recording = True

    def count(self, name: str) -> None:
        if self.recording:
            self.counts[-1][name] = self.counts[-1].get(name, 0) + 1

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield  # an exception ends the benchmark, so there is no need to tally it
        if self.recording:
            self.runs[-1].setdefault(name, []).append(time.perf_counter() - start)


class TallyingStore(SqlRunStore):
    """The real store; the calls the runner makes go on the tally, and so does each commit of a
    write transaction (each one a durable write: WAL with synchronous=FULL)."""

    def __init__(self, url: str, tally: Tally) -> None:
        super().__init__(url)
        self.tally = tally
        event.listen(self._engine, "commit", self._committed)

    def _committed(self, connection: Connection) -> None:
        if connection.get_execution_options().get(WRITE_OPTION, False):
            self.tally.count(COMMITS)

    def get(self, run_id: int) -> Run:
        with self.tally.part("store: read the run"):
            return super().get(run_id)

    def transition(self, *args: Any, **kwargs: Any) -> Run:
        with self.tally.part("store: state changes"):
            return super().transition(*args, **kwargs)

    def record_step(self, *results: StepResult) -> None:
        with self.tally.part("store: step records"):
            super().record_step(*results)

    def hold(self, run_id: int, *, at: datetime) -> None:
        with self.tally.part("store: claim renewals"):
            super().hold(run_id, at=at)


class DurableTwin(MemoryRunStore):
    """A diagnosis: the in-memory twin, each of its writes then made durable by one bare commit
    (`sqlite3`, WAL and synchronous=FULL, one row of the write's steps as JSON): the least that
    any durable journal of the runner's writes can add on this disk."""

    _JSON = TypeAdapter(tuple[StepResult, ...])

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._db = durable_db(path)

    def close(self) -> None:
        self._db.close()

    def _commit(self, results: Sequence[StepResult]) -> None:
        commit_line(self._db, self._JSON.dump_json(tuple(results)).decode())

    def transition(self, *args: Any, **kwargs: Any) -> Run:
        moved = super().transition(*args, **kwargs)
        self._commit(kwargs.get("steps", ()))
        return moved

    def record_step(self, *results: StepResult) -> None:
        super().record_step(*results)
        self._commit(results)


def relaxed_store(url: str, stack: ExitStack) -> SqlRunStore:
    """A diagnosis: `SqlRunStore` as it is, but with SQLite's `synchronous=NORMAL`, under which a
    commit in WAL mode reaches the disk only at the next checkpoint (lost at a power cut)."""
    engine = create_store_engine(url)
    stack.callback(engine.dispose)

    @event.listens_for(engine, "connect")  # after the store engine's own settings
    def _normal(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    return stack.enter_context(closing(SqlRunStore(engine)))


class TallyingShell:
    def __init__(self, inner: Shell, tally: Tally) -> None:
        self.inner, self.tally = inner, tally

    def run(self, command: str, **options: Any) -> CommandResult:
        with self.tally.part("ssh: commands"):
            return self.inner.run(command, **options)

    def close(self) -> None:
        self.inner.close()


class TallyingConnector:
    """The bot's connector as wired: connections kept between runs."""

    def __init__(self, tally: Tally, stack: ExitStack) -> None:
        self.inner, self.tally = KeptConnections(ParamikoConnector()), tally
        stack.callback(self.inner.close)

    def connect(self, target: SshTarget) -> Shell:
        with self.tally.part("ssh: connect (or take the kept one)"):
            return TallyingShell(self.inner.connect(target), self.tally)

    def close(self) -> None:
        self.inner.close()


def through_the_bot(target: SshTarget, store: RunStore, tally: Tally, stack: ExitStack) -> Ready:
    """Each repetition gets a new approved run; only `Runner.execute` is timed."""
    steps = tuple(
        PlannedStep(number=n, step=make_step(f"echo-{n}", action=ShellAction(command=c)), preview=c)
        for n, c in enumerate(COMMANDS, 1)
    )
    plan = make_plan(steps=steps, rollback=(), environment="bench", instance="host-1")
    host = Instance(name="host-1", environment="bench", product=plan.product, ssh=target)
    inventory = Inventory(environments={"bench": Environment(name="bench", instances=(host,))})
    # Only shell steps: the other ports are never called, so their in-memory twins stand in.
    ports = Ports(
        ssh=TallyingConnector(tally, stack),
        docker=MemoryDockerConnector(),
        registry=MemoryRegistry(),
        http=MemoryHttpCheck(),
        clock=SystemClock(),
    )
    runner = Runner(store, inventory, ports)

    def ready() -> Work:
        tally.recording = False
        at = ports.clock.now()
        run_id = store.create(plan, requested_by="U-asker", at=at).id
        store.transition(run_id, RunState.PLANNED, RunState.AWAITING_APPROVAL, at=at, actor="bot")
        store.transition(run_id, RunState.AWAITING_APPROVAL, RunState.APPROVED, at=at, actor="U-ok")
        tally.begin_run()

        def work() -> None:
            if runner.execute(run_id, actor="U-ok").state is not RunState.SUCCEEDED:
                raise RuntimeError(f"run #{run_id} did not succeed")

        return work

    return ready


def each_command(run: Callable[[str], object]) -> Work:
    def work() -> None:
        for command in COMMANDS:
            run(command)

    return work


def paramiko_client(target: SshTarget, *, nodelay: bool, gcm: bool = False) -> paramiko.SSHClient:
    """A connected paramiko client, host key checked, `TCP_NODELAY` on its socket or not. Stock
    paramiko: unlike the bot's transport (adapters/ssh.py), it does not answer sshd's host-key
    notice, so the first command on a new connection waits for the delayed-ACK timer, and it
    negotiates AES-CTR with HMAC-SHA2-256 where the bot prefers AES-GCM; with `gcm`, AES-GCM too
    (a diagnosis)."""
    sock = socket.create_connection((target.host, target.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(nodelay))  # 0 is the default
    client = paramiko.SSHClient()
    client.load_host_keys(str(target.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        target.host, port=target.port, username=target.user, sock=sock, allow_agent=False,
        look_for_keys=False, pkey=paramiko.PKey.from_path(target.key_file),
        disabled_algorithms={"ciphers": NOT_GCM} if gcm else None,
    )  # fmt: skip
    return client


def exec_one(client: paramiko.SSHClient, command: str) -> None:
    _stdin, stdout, stderr = client.exec_command(command)
    stdout.read()
    stderr.read()
    if stdout.channel.recv_exit_status() != 0:
        raise RuntimeError(f"`{command}` failed over paramiko")


def raw_paramiko(target: SshTarget, stack: ExitStack, *, nodelay: bool, gcm: bool = False) -> Work:
    """The ten commands on one connection opened before timing."""
    client = paramiko_client(target, nodelay=nodelay, gcm=gcm)
    stack.callback(client.close)
    return each_command(lambda command: exec_one(client, command))


def connect_and_run(target: SshTarget) -> Work:
    """Raw paramiko with the connection inside the clock, as the bot connects inside `execute`:
    connect (TCP_NODELAY), the ten commands, close."""

    def work() -> None:
        with closing(paramiko_client(target, nodelay=True)) as client:
            for command in COMMANDS:
                exec_one(client, command)

    return work


def openssh_multiplexed(server: SshServer, control_path: str, stack: ExitStack) -> Work:
    options = (
        f"IdentityFile={server.client_key}", "IdentitiesOnly=yes", "BatchMode=yes",
        f"UserKnownHostsFile={server.known_hosts}", "GlobalKnownHostsFile=/dev/null",
        "StrictHostKeyChecking=yes", "ControlMaster=auto", f"ControlPath={control_path}",
        "ControlPersist=60",
    )  # fmt: skip
    ssh = ["ssh", "-F", "/dev/null", "-p", str(server.port)]
    ssh += [arg for option in options for arg in ("-o", option)]
    login = f"{server.user}@127.0.0.1"
    # The first call starts the master, which stays in the background (ControlPersist).
    subprocess.run([*ssh, login, "true"], check=True, stdin=subprocess.DEVNULL, timeout=30)
    stack.callback(subprocess.run, [*ssh, "-O", "exit", login], capture_output=True, timeout=30)
    return each_command(lambda c: subprocess.run([*ssh, login, c], capture_output=True, check=True))


def bot_database(workdir: str, stack: ExitStack, *, postgres: bool) -> str:
    """The URL of an empty database at head for the bot's store: a SQLite file in `workdir`, or
    with `postgres` a schema of its own in the test kit's PostgreSQL (started if need be,
    dropped at the end)."""
    if postgres:
        url = stack.enter_context(postgres_schema(services_up(), prefix="bench"))
    else:
        url = f"sqlite:///{workdir}/bot.db"
    upgrade_schema(url)
    return url


def described(url: str) -> str:
    """The bot's database as the reports name it."""
    if url.startswith("sqlite"):
        return "a SQLite file (WAL, synchronous=FULL)"
    return "PostgreSQL (the test kit's, on loopback; synchronous_commit on)"


def durable_db(path: Path) -> sqlite3.Connection:
    """A bare SQLite database with one table, set as the store's engine sets its own: WAL and
    synchronous=FULL, transactions begun by the caller."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE step (id INTEGER PRIMARY KEY, line TEXT NOT NULL)")
    return db


def commit_line(db: sqlite3.Connection, line: str) -> None:
    """One durable write: a row inserted in a transaction of its own."""
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO step (line) VALUES (?)", (line,))
    db.execute("COMMIT")


def bare_commits(path: Path, repeat: int = 200) -> list[float]:
    """A diagnosis: seconds of one durable write with nothing around it (`sqlite3`, one row
    inserted), after one warm-up: the least that each of the store's commits can cost on this
    disk."""
    with closing(durable_db(path)) as db:
        seconds = []
        for n in range(repeat + 1):
            start = time.perf_counter()
            commit_line(db, f"echo step {n}")
            seconds.append(time.perf_counter() - start)
    return seconds[1:]


def measure(ready: Ready, repeat: int) -> list[float]:
    """Seconds per repetition, after one untimed warm-up (caches, a connection's first channel)."""
    seconds = []
    for _ in range(repeat + 1):
        work = ready()
        start = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - start)
    return seconds[1:]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.step_overhead", description=__doc__)
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per variant (>= 2)")
    parser.add_argument("--no-ansible", action="store_true", help="leave ansible-playbook out")
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="also: the bot with the in-memory store twin, and a bare durable commit",
    )
    parser.add_argument("--postgres", action="store_true", help=POSTGRES_HELP)
    args = parser.parse_args()
    repeat = max(2, args.repeat)
    print_conditions()
    missing = "left out (--no-ansible)" if args.no_ansible else ansible_peer.install()
    ensure_host_user()
    tally = Tally()
    with ExitStack() as stack:
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-"))
        server = stack.enter_context(SshServer())  # started here, removed at the end
        target, url = server.target(), bot_database(workdir, stack, postgres=args.postgres)
        store = stack.enter_context(closing(TallyingStore(url, tally)))
        results = {BOT: measure(through_the_bot(target, store, tally, stack), repeat)}
        spare = Tally()  # the other variants' calls are not reported
        cold = dataclasses.replace(target, keep_open=0.0)
        sql = stack.enter_context(closing(SqlRunStore(url)))
        results[COLD] = measure(through_the_bot(cold, sql, spare, stack), repeat)
        commit: list[float] = []
        if args.diagnose:
            ready = through_the_bot(target, MemoryRunStore(), spare, stack)
            results[TWIN] = measure(ready, repeat)
            lean = stack.enter_context(closing(DurableTwin(Path(workdir) / "lean.db")))
            results[LEAN] = measure(through_the_bot(target, lean, spare, stack), repeat)
            if not args.postgres:
                relaxed = relaxed_store(url, stack)
                results[NORMAL] = measure(through_the_bot(target, relaxed, spare, stack), repeat)
            commit = bare_commits(Path(workdir) / "bare.db")
        floor = each_command(lambda c: subprocess.run(["/bin/sh", "-c", c], capture_output=True))
        results["local /bin/sh -c (floor)"] = measure(lambda: floor, repeat)
        fast = raw_paramiko(target, stack, nodelay=True)
        results[BASELINE] = measure(lambda: fast, repeat)
        if args.diagnose:
            gcm = raw_paramiko(target, stack, nodelay=True, gcm=True)
            results[GCM] = measure(lambda: gcm, repeat)
        connecting = connect_and_run(target)
        results[CONNECTING] = measure(lambda: connecting, repeat)
        slow = raw_paramiko(target, stack, nodelay=False)
        results["paramiko, Nagle on"] = measure(lambda: slow, repeat)
        mux = openssh_multiplexed(server, f"{workdir}/cm", stack)
        results["OpenSSH ControlMaster"] = measure(lambda: mux, repeat)
        if not missing:
            runs, spans = ansible_peer.playbooks(server, Path(workdir), COMMANDS, stack)
            for name, run in runs.items():
                results[name] = measure(lambda run=run: run, repeat)
            for label, seconds in spans.items():
                results[f"  the 10 tasks alone ({label})"] = seconds[-repeat:]
    report(results, tally.runs[1:], tally.counts[1:], commit, described(url))
    if missing:
        print(f"\nansible-playbook: not measured: {missing}")
    print_load_after()


def report(
    results: dict[str, list[float]],
    runs: list[dict[str, list[float]]],
    counts: list[dict[str, int]],
    commit: list[float],
    database: str,
) -> None:
    print(f"{STEPS} steps of `echo step N` on one host over loopback, {len(runs)} timed runs each")
    print("bot: Runner, KeptConnections over ParamikoConnector (as wired), SqlRunStore")
    print(f"     on {database};")
    print("     docker/registry/http ports are in-memory twins (the plan has shell steps only);")
    print("     each timed run follows a run on the same host\n")
    print(f"{'variant (ms for all 10 steps)':<{WIDTH}}{'min':>8}{'median':>8}{'p90':>8}")
    medians = {name: statistics.median(seconds) * 1000 for name, seconds in results.items()}
    for name, seconds in results.items():
        p90 = statistics.quantiles(seconds, n=10, method="inclusive")[-1]
        print(f"{name:<{WIDTH}}{min(seconds) * 1000:>8.1f}{medians[name]:>8.1f}{p90 * 1000:>8.1f}")
    bot, raw = medians[BOT], medians[BASELINE]
    met = "met" if bot / raw <= TARGET_RATIO else "NOT met"
    ratio = f"{bot / raw:.2f}x (target {TARGET_RATIO}x: {met})"
    print(f"\nbot / {BASELINE} (medians): {ratio}")
    print(f"bot's overhead per step over it: {(bot - raw) / STEPS:.1f} ms")
    print(f"{COLD} / {CONNECTING} (medians): {medians[COLD] / medians[CONNECTING]:.2f}x")
    for name in (n for n in medians if n.startswith("ansible-playbook")):
        print(f"{name} / bot (medians): {medians[name] / bot:.1f}x")
    # The first command of a run opens the first channel of a new connection: shown apart.
    for run in runs:
        first, *others = run.pop("ssh: commands")
        run["ssh: first command"], run["ssh: the other commands"] = [first], others
    total = statistics.fmean(results[BOT]) * 1000
    print(f"\nwhere `execute` spends its time (mean of the timed runs, {total:.1f} ms):")
    print(f"  {'part':<40}{'ms/run':>8}{'calls/run':>11}")
    parts = {name: statistics.fmean(sum(run[name]) for run in runs) * 1000 for name in runs[0]}
    parts["engine, runner and the rest"] = total - sum(parts.values())
    for name, ms in sorted(parts.items()):
        print(f"  {name:<40}{ms:>8.1f}{len(runs[0].get(name, [])) or '':>11}")
    each = parts["ssh: the other commands"] / (STEPS - 1)
    print(f"ms a command once connected: ParamikoShell.run {each:.2f}, exec_command {raw / 10:.2f}")
    commits = statistics.fmean(run.get(COMMITS, 0) for run in counts)
    print(f"durable commits a run (write transactions of the store): {commits:.1f}")
    if commit:
        ms = statistics.median(commit) * 1000
        p90 = statistics.quantiles(commit, n=10, method="inclusive")[-1] * 1000
        print(
            f"a bare durable commit on this disk (sqlite3, WAL, synchronous=FULL): median "
            f"{ms:.2f} ms, p90 {p90:.2f} ms ({len(commit)} times); {commits:.0f} of them: "
            f"{commits * ms:.1f} ms"
        )
    if TWIN in results:
        print(f"{TWIN}: MemoryRunStore in place of SqlRunStore, no durable writes (a diagnosis)")
        print(f"{LEAN}: the twin, each write then committed bare (sqlite3, synchronous=FULL)")
        if NORMAL in results:
            print(f"{NORMAL}: the store as it is, with commits that may be lost at a power cut")
        for name in (n for n in (TWIN, LEAN, NORMAL) if n in results):
            print(f"  {name} / {BASELINE} (medians): {medians[name] / raw:.2f}x")
    if GCM in results:
        print(f"{GCM}: the baseline negotiating AES-GCM, as the bot's transport does")
        print(f"  bot / {GCM} (medians): {bot / medians[GCM]:.2f}x")


if __name__ == "__main__":
    main()
