"""The ten-step plan on 20 instances: the bot's fleet runner against raw paramiko in 20 threads.

Each instance is an sshd of its own (one `SshServer` each, run as root) on loopback. The bot runs
one fleet run (`FleetRunner`: the canary alone, then batches of 1, 5 or 20) with its SSH
connector as wired (`KeptConnections`: each host's connection kept from the fleet run before) and
a real `SqlRunStore` on a SQLite file (WAL, synchronous=FULL; `--postgres`: on the test kit's
PostgreSQL); creating and approving the fleet
run happen before the clock starts, and each member's run is created, approved and executed
inside it, as in production. Batch 20 runs once more with `keep_open: 0s`, connecting to every
host inside the clock. Raw paramiko runs the same commands in 20 threads at once, one connection
each with TCP_NODELAY, connected before timing (and, to show what connecting costs at this
concurrency, once more with the connection inside the clock). `--diagnose` adds batch 20 with
the in-memory store twin in place of `SqlRunStore`, and raw paramiko on the first instance alone
before the other 19 at once, as the fleet runner waits for its canary.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack, closing
from dataclasses import replace
from typing import Any

from adapters.clock import SystemClock
from adapters.memory.docker import MemoryDockerConnector, MemoryRegistry
from adapters.memory.http import MemoryHttpCheck
from adapters.memory.store import MemoryRunStore
from adapters.sql_store import SqlRunStore
from bench.conditions import print_conditions, print_load_after
from bench.step_overhead import (
    COMMANDS,
    COMMITS,
    POSTGRES_HELP,
    STEPS,
    TARGET_RATIO,
    Ready,
    Tally,
    TallyingConnector,
    TallyingStore,
    Work,
    bot_database,
    connect_and_run,
    described,
    measure,
    raw_paramiko,
)
from bot.domain.inventory import Environment, Instance, Inventory, SshTarget
from bot.domain.plan import Plan, PlannedStep
from bot.domain.ports import RunStore
from bot.domain.run import Run, RunState, StepResult
from bot.domain.runbook import MemberAction, ShellAction, Step
from bot.engine.fleet import FleetRunner
from bot.engine.runner import SilentObserver
from bot.engine.session import Ports
from tests.factories import make_plan, make_step
from tests.hostkit.services import ensure_host_user
from tests.hostkit.sshd import SshServer

INSTANCES = 20
BATCHES = (1, 5, 20)
HEADLINE = f"bot, FleetRunner, batch {INSTANCES}"
COLD = "keep_open 0s"  # connecting to every host inside the clock
MEMORY = "in-memory store twin"  # a diagnosis: MemoryRunStore
BASELINE = f"raw paramiko, {INSTANCES} threads"
CANARY_FIRST = f"raw paramiko, 1 then {INSTANCES - 1} threads"  # a diagnosis: the canary's wait
GCM = f"{BASELINE}, AES-GCM"  # a diagnosis: the baseline with the bot's cipher


class FleetStore(TallyingStore):
    """The real store, its calls on the tally, the creation of the members' runs too."""

    def create(self, *args: Any, **kwargs: Any) -> Run:
        with self.tally.part("store: create member runs"):
            return SqlRunStore.create(self, *args, **kwargs)


class Milestones(SilentObserver):
    """When each member of the fleet finished, seen by the fleet's observer."""

    def __init__(self) -> None:
        self.start = 0.0
        self.done: dict[int, float] = {}  # member number -> perf_counter
        self.runs: list[dict[int, float]] = []

    def step_finished(self, run: Run, result: StepResult) -> None:
        self.done[result.number] = time.perf_counter()


def fleet_plan(targets: list[SshTarget], batch_size: int) -> tuple[Plan, Inventory]:
    """The fleet plan the planner would make for 20 instances: one member plan each."""
    steps = tuple(
        PlannedStep(number=n, step=make_step(f"echo-{n}", action=ShellAction(command=c)), preview=c)
        for n, c in enumerate(COMMANDS, 1)
    )
    names = [f"host-{n}" for n in range(1, len(targets) + 1)]
    members = tuple(
        make_plan(steps=steps, rollback=(), environment="bench", instance=name) for name in names
    )
    fleet_steps = tuple(
        PlannedStep(
            number=n,
            step=Step(
                id=name, title=f"Upgrade {name}", action=MemberAction(index=n - 1), timeout=0.0
            ),
            preview=f"in-place on {name}",
            target=f"bench/{name}",
        )
        for n, name in enumerate(names, 1)
    )
    plan = replace(
        members[0],
        instance="*",
        steps=fleet_steps,
        members=members,
        batch_size=batch_size,
        variables={},
        digest="",
    )
    product = plan.product
    instances = tuple(
        Instance(name=name, environment="bench", product=product, ssh=target)
        for name, target in zip(names, targets, strict=True)
    )
    return plan, Inventory(environments={"bench": Environment(name="bench", instances=instances)})


def through_the_fleet_runner(
    targets: list[SshTarget],
    store: RunStore,
    tally: Tally,
    batch_size: int,
    marks: Milestones,
    stack: ExitStack,
) -> Ready:
    plan, inventory = fleet_plan(targets, batch_size)
    ports = Ports(
        ssh=TallyingConnector(tally, stack),
        docker=MemoryDockerConnector(),
        registry=MemoryRegistry(),
        http=MemoryHttpCheck(),
        clock=SystemClock(),
    )
    fleet = FleetRunner(store, inventory, ports, observer=marks)

    def ready() -> Work:
        tally.recording = False
        at = ports.clock.now()
        run_id = store.create(plan, requested_by="U-asker", at=at).id
        store.transition(run_id, RunState.PLANNED, RunState.AWAITING_APPROVAL, at=at, actor="bot")
        store.transition(run_id, RunState.AWAITING_APPROVAL, RunState.APPROVED, at=at, actor="U-ok")
        tally.begin_run()
        marks.done = {}
        marks.runs.append(marks.done)

        def work() -> None:
            marks.start = time.perf_counter()
            marks.done[0] = marks.start
            if fleet.execute(run_id, actor="U-ok").state is not RunState.SUCCEEDED:
                raise RuntimeError(f"fleet run #{run_id} did not succeed")

        return work

    return ready


def in_threads(works: list[Work]) -> Work:
    """Run the works at once, one thread each; return when all have finished."""

    def work() -> None:
        gate = threading.Barrier(len(works))
        errors: list[BaseException] = []

        def each(one: Work) -> None:
            gate.wait()
            try:
                one()
            except BaseException as exc:  # surfaces below, in the timing thread
                errors.append(exc)

        threads = [threading.Thread(target=each, args=(one,)) for one in works]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    return work


def one_then_the_rest(works: list[Work]) -> Work:
    """The first work alone, then the others in threads at once: the order in which the fleet
    runner upgrades (its canary first)."""
    canary, rest = in_threads(works[:1]), in_threads(works[1:])

    def work() -> None:
        canary()
        rest()

    return work


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__)
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per variant (>= 2)")
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="also: batch 20 with the in-memory store twin, and raw paramiko on one instance "
        f"before the other {INSTANCES - 1} (the fleet runner's canary first)",
    )
    parser.add_argument("--postgres", action="store_true", help=POSTGRES_HELP)
    args = parser.parse_args()
    repeat = max(2, args.repeat)
    print_conditions()
    ensure_host_user()
    results: dict[str, list[float]] = {}
    tallies: dict[str, tuple[Tally, Milestones, str]] = {}
    with ExitStack() as stack:
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-fleet-"))
        servers = [stack.enter_context(SshServer()) for _ in range(INSTANCES)]
        targets = [server.target() for server in servers]
        url = bot_database(workdir, stack, postgres=args.postgres)
        variants = [(f"bot, FleetRunner, batch {batch}", batch, "") for batch in BATCHES]
        variants.append((f"bot, batch {INSTANCES}, {COLD}", INSTANCES, "c"))
        if args.diagnose:
            variants.append((f"bot, batch {INSTANCES}, {MEMORY}", INSTANCES, "m"))
        for name, batch, diagnosis in variants:
            tally, marks = Tally(), Milestones()
            store: RunStore = (
                MemoryRunStore()  # its calls are not on the tally: store writes show 0
                if "m" in diagnosis
                else stack.enter_context(closing(FleetStore(url, tally)))
            )
            hosts = [replace(t, keep_open=0.0) for t in targets] if "c" in diagnosis else targets
            ready = through_the_fleet_runner(hosts, store, tally, batch, marks, stack)
            results[name] = measure(ready, repeat)
            tallies[name] = (tally, marks, diagnosis)
        raws = [raw_paramiko(target, stack, nodelay=True) for target in targets]
        fast = in_threads(raws)
        results[BASELINE] = measure(lambda: fast, repeat)
        if args.diagnose:
            canary_first = one_then_the_rest(raws)
            results[CANARY_FIRST] = measure(lambda: canary_first, repeat)
            gcm = in_threads([raw_paramiko(t, stack, nodelay=True, gcm=True) for t in targets])
            results[GCM] = measure(lambda: gcm, repeat)
        connecting = in_threads([connect_and_run(target) for target in targets])
        results[f"{BASELINE}, connecting"] = measure(lambda: connecting, repeat)
        one: Callable[[], object] = in_threads([raw_paramiko(targets[0], stack, nodelay=True)])
        results["raw paramiko, 1 instance"] = measure(lambda: one, repeat)
    report(results, tallies, described(url))
    print_load_after()


def report(
    results: dict[str, list[float]],
    tallies: dict[str, tuple[Tally, Milestones, str]],
    database: str,
) -> None:
    print(f"{STEPS} steps of `echo step N` on each of {INSTANCES} instances (one sshd each)")
    print("bot: FleetRunner (the canary alone, then batches), a Runner per member,")
    print("     KeptConnections over ParamikoConnector (as wired), SqlRunStore")
    print(f"     on {database};")
    print("     each timed run follows a fleet run on the same hosts\n")
    print(f"{'variant (ms for the whole fleet)':<40}{'min':>8}{'median':>8}{'p90':>8}")
    medians = {name: statistics.median(seconds) * 1000 for name, seconds in results.items()}
    for name, seconds in results.items():
        p90 = statistics.quantiles(seconds, n=10, method="inclusive")[-1]
        print(f"{name:<40}{min(seconds) * 1000:>8.1f}{medians[name]:>8.1f}{p90 * 1000:>8.1f}")
    bot, raw = medians[HEADLINE], medians[BASELINE]
    met = "met" if bot / raw <= TARGET_RATIO else "NOT met"
    print(f"\n{HEADLINE} / {BASELINE} (medians): {bot / raw:.2f}x (target {TARGET_RATIO}x: {met})")
    if CANARY_FIRST in medians:
        canary_first = medians[CANARY_FIRST]
        print(f"{HEADLINE} / {CANARY_FIRST} (medians): {bot / canary_first:.2f}x")
        memory = medians.get(f"bot, batch {INSTANCES}, {MEMORY}")
        if memory is not None:
            print(f"  the same with the {MEMORY}: {memory / canary_first:.2f}x")
    if GCM in medians:
        print(f"{HEADLINE} / {GCM} (medians): {bot / medians[GCM]:.2f}x")
    connecting = medians[f"{BASELINE}, connecting"]
    print(f"{HEADLINE} / {BASELINE}, connecting (medians): {bot / connecting:.2f}x")
    print("\nwhere the fleet's time goes (means of the timed runs; member-ms add up over threads):")
    head = f"  {'batch':<7}{'canary':>8}{'after it':>10}{'connect':>9}{'commands':>10}"
    print(head + f"{'store writes':>14}{'commits':>9}")
    for name, (tally, marks, diagnosis) in tallies.items():
        runs, mark_runs = tally.runs[1:], marks.runs[1:]
        canary = statistics.fmean(m[1] - m[0] for m in mark_runs) * 1000
        after = statistics.fmean(max(m.values()) - m[1] for m in mark_runs) * 1000

        def per_member(*parts: str, runs: list[dict[str, list[float]]] = runs) -> float:
            total = statistics.fmean(sum(sum(run.get(p, [])) for p in parts) for run in runs)
            return total * 1000 / INSTANCES

        connect = per_member("ssh: connect (or take the kept one)")
        commands = per_member("ssh: commands")
        writes = per_member(
            "store: step records",
            "store: state changes",
            "store: create member runs",
            "store: claim renewals",
        )
        commits = statistics.fmean(c.get(COMMITS, 0) for c in tally.counts[1:]) / INSTANCES
        batch = name.split("batch ")[1].split(",")[0] + diagnosis
        print(
            f"  {batch:<7}{canary:>8.1f}{after:>10.1f}{connect:>9.1f}{commands:>10.1f}"
            f"{writes:>14.1f}{commits:>9.1f}"
        )
    print("  (canary and after it: ms of wall time; connect, commands, store: ms per member,")
    print("   waits included; commits: the store's durable commits per member, the fleet's own")
    print("   records shared out)")
    if any("c" in diagnosis for *_, diagnosis in tallies.values()):
        print(f"  c: {COLD}: every member connects inside the clock")
    if any("m" in diagnosis for *_, diagnosis in tallies.values()):
        print(f"  m: the {MEMORY} (MemoryRunStore) in place of SqlRunStore (a diagnosis)")


if __name__ == "__main__":
    main()
