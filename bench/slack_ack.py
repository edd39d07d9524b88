"""Slack acknowledgement latency of `/upgrade` in HTTP mode, next to a bare Bolt app (its floor).

The bot runs as production runs it: `python -m bot serve` in a process of its own (waitress with
the server's thread count around `bot.server.http_app`, a SQLite store), on a sandbox MyST Studio
(no Docker, no network). The floor is a slack_bolt `App` whose `/upgrade` listener only acks,
served by waitress with the same thread count and Bolt's same WSGI adapter, in its own process.
Slack's Web API is the emulator, in a third process; this one only sends signed slash commands.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adapters.sql_store import SqlRunStore, upgrade_schema
from bench.conditions import print_conditions, print_load_after
from bot.domain.run import RunState
from bot.sandbox import create_sandbox
from bot.server import EVENTS_PATH, HTTP_THREADS
from tests.hostkit.services import ROOT, free_port
from tests.slackemu import requests as slack

SIGNING_SECRET = "bench-signing-secret-0123456789"
USER, CHANNEL = "U0ALICE01", "C0UPGRADE"
UPGRADE, MALFORMED = "myst 3.9.1", "myst"  # planned after the ack; refused in the ack itself
LEVELS = (1, 10, 50)  # requests in flight at once
BURSTS = {1: 200, 10: 30, 50: 10}  # timed bursts per level at --scale 1: 200, 300, 500 requests
TARGET_MS, TARGET_AT = 100.0, 50  # ack p99 under 100 ms at 50 concurrent requests
SLACK_DEADLINE_S = 3.0
HEADLINE, FLOOR = "bot: /upgrade myst 3.9.1", "bare Bolt app (floor)"


# -- Slack's side: the Web API emulator in a process of its own -----------------------------------


def serve_emulator() -> None:
    """Serve the emulator; print its URL and token, then answer each line on stdin with how many
    /upgrade requests the bot has answered in the channel (a plan, or a refusal), how many Web
    API calls it has made in all, and when (epoch seconds) the last answer came. Ends when stdin
    closes."""
    from tests.slackemu.server import SlackEmulator

    with SlackEmulator() as emulator:
        # Posting limits (1 message a second per channel) would spread 50 plans over a minute:
        # that paces the work after the ack, which is not what is measured here.
        emulator.limiter.enabled = False
        print(emulator.url, emulator.token, flush=True)
        for _ in sys.stdin:
            calls = emulator.calls()
            answers = [
                c.at
                for c in calls
                if c.method in ("chat.postMessage", "chat.postEphemeral")
                and not c.args.get("thread_ts")
            ]
            print(len(answers), len(calls), max(answers, default=0.0), flush=True)


class Emulator:
    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdin is not None
        assert process.stdout is not None
        self._in, self._out = process.stdin, process.stdout
        self.url, self.token = self._out.readline().split()

    def count(self) -> tuple[int, int, float]:
        self._in.write("count\n")
        self._in.flush()
        answered, calls, last_answer = self._out.readline().split()
        return int(answered), int(calls), float(last_answer)

    def settle(self, answered: int, timeout: float = 120.0) -> float:
        """Wait until the bot has answered `answered` requests in all and gone quiet (no new call
        for 50 ms), so that the next burst meets an idle bot; return when the last answer came."""
        deadline = time.monotonic() + timeout
        last = (-1, -1, 0.0)
        while time.monotonic() < deadline:
            now = self.count()
            if now[0] >= answered and now == last:
                return now[2]
            last = now
            time.sleep(0.05)
        raise RuntimeError(f"the bot answered {last[0]} of {answered} requests in {timeout:g}s")


@contextmanager
def emulator_process() -> Iterator[Emulator]:
    argv = [sys.executable, "-m", "bench.slack_ack", "--emulator"]
    process = subprocess.Popen(
        argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        yield Emulator(process)
    finally:
        assert process.stdin is not None
        process.stdin.close()  # the emulator's loop ends and it stops
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- the servers ---------------------------------------------------------------------------------


def serve_floor(port: int, *, process_before_response: bool) -> None:
    """The floor: a bare Bolt app that acks `/upgrade` with a text, served like the bot."""
    import waitress
    from slack_bolt import Ack, App
    from slack_bolt.adapter.wsgi import SlackRequestHandler
    from slack_sdk import WebClient

    client = WebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"])
    app = App(
        client=client,
        signing_secret=os.environ["SLACK_SIGNING_SECRET"],
        process_before_response=process_before_response,
    )

    @app.command("/upgrade")
    def on_command(ack: Ack, command: dict[str, Any]) -> None:
        ack(text=f"Planning `/upgrade {command.get('text', '').strip()}`.")

    handler = SlackRequestHandler(app, EVENTS_PATH)
    waitress.serve(handler, host="127.0.0.1", port=port, threads=HTTP_THREADS)


# Diagnoses: the bot without one of what keeps its acks at the floor (not options it offers).
NOT_HELD_BACK = "import bot.workers; bot.workers.Foreground.wait_quiet = lambda self, since: None"
NOT_FROZEN = "import gc; gc.freeze = lambda: None"


def bot_argv(port: int, without: str | None = None) -> list[str]:
    """`python -m bot serve`; with `without`, the same entry point after that line of Python."""
    if without is None:
        return [sys.executable, "-m", "bot", "serve", "--port", str(port)]
    serve = f"from bot.cli import main; raise SystemExit(main(['serve', '--port', '{port}']))"
    return [sys.executable, "-c", f"{without}; {serve}"]


@contextmanager
def server(argv: list[str], port: int, *, env: dict[str, str], log: Path) -> Iterator[str]:
    """Start a server process, wait until it answers HTTP; yield its Request URL."""
    with log.open("ab") as out:
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 60
        while not _answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"`{' '.join(argv)}` did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}{EVENTS_PATH}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # the floor has no /healthz: any HTTP answer means it is up
    except OSError:
        return False


# -- load ------------------------------------------------------------------------------------------


@dataclass
class Tally:
    seconds: list[float] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)  # not a 200 with the expected text
    planned: list[float] = field(default_factory=list)  # per burst: release to its last answer
    lock: threading.Lock = field(default_factory=threading.Lock)


def burst(url: str, concurrency: int, tally: Tally, text: str, expect: bytes) -> float:
    """`concurrency` signed `/upgrade` requests released at once; each one's latency recorded.
    Returns when (epoch seconds) they were released."""
    sender = slack.SlackSender(url, SIGNING_SECRET, timeout=30)
    released: list[float] = []
    gate = threading.Barrier(concurrency, action=lambda: released.append(time.time()))

    def one() -> None:
        body, content_type = slack.slash_command(text, USER, CHANNEL)
        gate.wait()
        start = time.perf_counter()
        status, _, answer = sender.send(body, content_type)  # signed here, at sending
        elapsed = time.perf_counter() - start
        with tally.lock:
            tally.seconds.append(elapsed)
            if status != 200 or expect not in answer:
                tally.bad.append(f"{status} {answer[:70]!r}")

    threads = [threading.Thread(target=one) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return released[0]


def reject_pending(store: SqlRunStore) -> None:
    """Reject the runs that await approval, as approvers would. Pending runs must not pile up
    over hundreds of bursts: the bot's expiry sweep (every 30 s) reads every one of them, about
    1.5 ms each, and would stall the acks it overlaps."""
    now = datetime.now(UTC)
    for run in store.runs(states=(RunState.AWAITING_APPROVAL,), limit=1000):
        store.transition(run.id, run.state, RunState.REJECTED, at=now, actor="bench")


def measure(
    url: str, emulator: Emulator | None, scale: float, text: str, store: SqlRunStore | None = None
) -> dict[int, Tally]:
    """Per level one untimed burst, then the timed ones. With `emulator`, the bot's work after
    each burst (planning, posting) is waited out before the next, and with `store` the runs it
    planned are rejected, and the time from each burst's release to the bot's last answer in
    the channel is kept; otherwise 50 ms pass."""
    expect = b"Planning" if text == UPGRADE else b"needs a product"
    answered = emulator.count()[0] if emulator else 0
    results = {}
    for level in LEVELS:
        tally = Tally()
        for n in range(1 + max(3, math.ceil(BURSTS[level] * scale))):
            released = burst(url, level, tally if n else Tally(), text, expect)
            answered += level
            if emulator is None:
                time.sleep(0.05)
            elif n:
                tally.planned.append(emulator.settle(answered) - released)
            else:
                emulator.settle(answered)
            if store is not None:
                reject_pending(store)
        results[level] = tally
    return results


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least `q` percent at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def report(results: dict[str, dict[int, Tally]]) -> None:
    print("ms from sending a signed slash command to the whole answer; bursts of N requests")
    print(f"released at once; waitress with {HTTP_THREADS} threads in both servers; Slack's Web")
    print("API is the emulator, in its own process, with its posting limits off\n")
    print(f"{'variant':<44}{'in flight':>10}{'requests':>9}{'p50':>7}{'p99':>7}{'max':>7}")
    for name, levels in results.items():
        for level, tally in levels.items():
            ms = [s * 1000 for s in tally.seconds]
            print(
                f"{name:<44}{level:>10}{len(ms):>9}{statistics.median(ms):>7.1f}"
                f"{percentile(ms, 99):>7.1f}{max(ms):>7.1f}"
            )
            for bad in sorted(set(tally.bad))[:3]:
                print(f"  ! {tally.bad.count(bad)} answered {bad}")
    print("\nms from a burst's release to the bot's last answer in the channel (plan or refusal)")
    print(f"{'variant':<44}{'in flight':>10}{'bursts':>9}{'p50':>7}{'max':>7}")
    for name, levels in results.items():
        for level, tally in levels.items():
            if tally.planned:
                ms = [s * 1000 for s in tally.planned]
                print(
                    f"{name:<44}{level:>10}{len(ms):>9}{statistics.median(ms):>7.1f}{max(ms):>7.1f}"
                )
    bot, floor = results[HEADLINE][TARGET_AT], results[FLOOR][TARGET_AT]
    p99 = percentile(bot.seconds, 99) * 1000
    met = "met" if p99 < TARGET_MS and not bot.bad else "NOT met"
    print(f"\ntarget: ack p99 under {TARGET_MS:g} ms at {TARGET_AT} concurrent /upgrade: {met}")
    print(f"  bot p99 {p99:.1f} ms, floor p99 {percentile(floor.seconds, 99) * 1000:.1f} ms")
    late = sum(
        s > SLACK_DEADLINE_S for ls in results.values() for t in ls.values() for s in t.seconds
    )
    print(f"  answers past Slack's {SLACK_DEADLINE_S:g} s deadline: {late}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.slack_ack", description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="more or fewer bursts (1.0)")
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="also: the bot with its planning not held back during acks, the bot without its "
        "start-up objects frozen, the floor with process_before_response",
    )
    parser.add_argument("--emulator", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--floor-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--before-response", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.emulator:
        serve_emulator()
    elif args.floor_server:
        serve_floor(args.floor_server, process_before_response=args.before_response)
    else:
        print_conditions()
        report(measure_all(args.scale, diagnose=args.diagnose))
        print_load_after()


def measure_all(scale: float, *, diagnose: bool) -> dict[str, dict[int, Tally]]:
    results: dict[str, dict[int, Tally]] = {}
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-ack-")))
        emulator = stack.enter_context(emulator_process())
        database = f"sqlite:///{workdir}/bot.db"
        upgrade_schema(database)
        store = stack.enter_context(closing(SqlRunStore(database)))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
        env.update(
            SLACK_BOT_TOKEN=emulator.token,
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_API_URL=emulator.url,
            DATABASE_URL=database,
            BOT_CONFIG=str(create_sandbox(workdir / "sandbox")),
        )
        log = workdir / "servers.log"

        def floor(*extra: str) -> tuple[list[str], int]:
            port = free_port()
            argv = [sys.executable, "-m", "bench.slack_ack", "--floor-server", str(port), *extra]
            return argv, port

        port = free_port()
        with server(bot_argv(port), port, env=env, log=log) as url:
            results[HEADLINE] = measure(url, emulator, scale, UPGRADE, store)
            results["bot: /upgrade myst (refused in the ack)"] = measure(
                url, None, scale, MALFORMED
            )
        with server(*floor(), env=env, log=log) as url:
            results[FLOOR] = measure(url, None, scale, UPGRADE)
        if diagnose:
            for name, without in (
                ("bot, planning not held back during acks", NOT_HELD_BACK),
                ("bot, start-up objects not frozen", NOT_FROZEN),
            ):
                port = free_port()
                with server(bot_argv(port, without), port, env=env, log=log) as url:
                    results[name] = measure(url, emulator, scale, UPGRADE, store)
            with server(*floor("--before-response"), env=env, log=log) as url:
                results["floor, process_before_response=True"] = measure(url, None, scale, UPGRADE)
    return results


if __name__ == "__main__":
    main()
