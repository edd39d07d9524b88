"""Injects one case's fault while its step runs, as an observer of the real runner.

The runner tells its observer when a step starts, before the step does anything. Switch faults
(a script that fails or hangs, a wrong version, start-up errors, a frozen console) are set right
then. Faults that must land *while* the step runs park the step's script at its start with a
`hold` switch: a thread waits until the script is parked, breaks the link (kills the SSH sessions,
cuts the Docker or registry relay), then lets the script go on into the broken world. A transfer
has its SSH sessions killed after its first chunk. A plain command (`test`, `mkdir`) is too short
to catch: its sessions are killed as it starts, or, when the step is the run's first on its host
(sessions open on first use), the connection it takes is killed: the one kept open since an
earlier run (planning reads the version over SSH), and the new one it then opens, as it is made.
When the rollback starts, every fault is mended (unless the case says it lasts), as when a
network blip or a bad release is over.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from bot.domain.plan import PlannedStep
from bot.domain.run import Phase, Run, RunState
from bot.engine.runner import SilentObserver
from tests.faults.matrix import Case as FaultCase
from tests.faults.matrix import Fault
from tests.faults.rig import Rig
from tests.hostkit.sshd import SETTLE, kill

WRONG_VERSION = "3.9.9"
STARTUP_ERROR = "ERROR could not load the pipeline catalogue (injected by the fault matrix)"
HOLD_WAIT = 15.0  # seconds a held script has to reach its switch


class FaultInjector(SilentObserver):
    """A `RunObserver` that breaks one thing for one case; `detail` says what it did."""

    def __init__(self, case: FaultCase, rig: Rig, clock: Callable[[], float] = time.monotonic):
        self.case, self.rig, self.clock = case, rig, clock
        self.injected = False
        self.detail = "not injected: the step never started"
        self.window: tuple[float, float | None] | None = None  # (injected, mended) on `clock`
        self._armed_transfer = False
        self._threads: list[threading.Thread] = []

    # -- the runner's calls ---------------------------------------------------------------------

    def step_started(self, run: Run, phase: Phase, planned: PlannedStep) -> None:
        if phase is Phase.UPGRADE and planned.step.id == self.case.step and self.window is None:
            try:
                self._inject()
            except Exception as exc:  # an observer must not raise into the runner
                self.detail = f"injection failed: {exc!r}"

    def transfer(self, run: Run, planned: PlannedStep, done: int, total: int | None) -> None:
        if self._armed_transfer and planned.step.id == self.case.step:
            self._armed_transfer = False
            killed = self.rig.ssh.kill_sessions()
            self._done(f"killed {len(killed)} sshd session processes after {done} bytes")

    def state_changed(self, run: Run, reason: str) -> None:
        if run.state is RunState.ROLLING_BACK and not self.case.lasting:
            self.mend()

    # -- ours -----------------------------------------------------------------------------------

    def mend(self) -> None:
        self.finish()
        self.rig.heal()
        if self.window is not None and self.window[1] is None:
            self.window = (self.window[0], self.clock())

    def finish(self) -> None:
        """Wait for the injection threads (they end once their script was let go)."""
        for thread in self._threads:
            thread.join(timeout=HOLD_WAIT + 5)

    def _inject(self) -> None:
        case, rig = self.case, self.rig
        self.window = (self.clock(), None)
        script = case.script or ""
        switches, host = rig.switches[case.target], rig.hosts.get(case.target)
        name = case.scenario.role_name(case.target)
        if case.fault is Fault.SCRIPT_FAILS:
            message = "injected failure (fault matrix)"
            if host is not None:
                host.fail_script(script, message)
            else:
                switches.fail(script, message)
            self._done(f"fail switch on {script}.sh")
        elif case.fault is Fault.TIMES_OUT and case.how == "hang":
            switches.hang(script)
            self._done(f"{script}.sh sleeps past the shortened timeout")
        elif case.fault is Fault.TIMES_OUT:
            assert host is not None
            rig.docker.containers.get(host.container).pause()
            self._done(f"paused {name}'s container: its console hangs")
        elif case.fault is Fault.WRONG_VERSION:
            assert host is not None
            host.console_shows(WRONG_VERSION)
            self._done(f"{name}'s console shows {WRONG_VERSION}")
        elif case.fault is Fault.STARTUP_ERRORS:
            assert host is not None
            host.startup_errors(STARTUP_ERROR)
            self._done(f"the next start of {name} logs an ERROR line")
        elif case.how == "at-start":
            killed = rig.ssh.kill_sessions()
            self._done(f"killed {len(killed)} sshd session processes as the step began")
        elif case.how == "at-connect":
            self._when_connecting(set(rig.ssh.session_pids(settle=SETTLE)))
        elif case.how == "mid-transfer":
            self._armed_transfer = True
        else:
            self._while_held(script, self._breaker())

    def _breaker(self) -> Callable[[], str]:
        rig = self.rig
        if self.case.fault is Fault.SSH_DROPS:
            return lambda: f"killed {len(rig.ssh.kill_sessions())} sshd session processes"
        relay = rig.docker_relay if self.case.fault is Fault.DOCKER_DOWN else rig.registry_relay
        what = "Docker" if self.case.fault is Fault.DOCKER_DOWN else "registry"

        def cut() -> str:
            relay.cut()
            return f"cut the {what} relay" + (" for good" if self.case.lasting else "")

        return cut

    def _while_held(self, script: str, breaker: Callable[[], str]) -> None:
        """Park `script` at its start; once it is there, break the link and let it go on."""
        switches = self.rig.switches[self.case.target]
        switches.hold(script)

        def act() -> None:
            try:
                if switches.wait_held(script, HOLD_WAIT):
                    self._done(f"{script}.sh was running: {breaker()}")
                else:
                    self.detail = f"not injected: {script}.sh never started"
            finally:
                switches.release(script)

        thread = threading.Thread(target=act, name=f"fault {self.case.id}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _when_connecting(self, kept: set[int]) -> None:
        """Kill the connections kept open for the step to take, then the one the step opens
        instead as soon as sshd forks for it (the key exchange and authentication take tens of
        milliseconds, the polling one), and any other new one for half a second after, so the
        step's own cannot slip through."""
        ssh = self.rig.ssh
        kill(list(kept))

        def act() -> None:
            opened: set[int] = set()
            deadline, until = time.monotonic() + HOLD_WAIT, None
            while time.monotonic() < (until or deadline):
                if new := [pid for pid in ssh.session_pids() if pid not in kept | opened]:
                    kill(new)
                    opened.update(new)
                    until = until or time.monotonic() + 0.5
                time.sleep(0.001)
            if opened:
                self._done(
                    f"killed the kept connection ({len(kept)} sshd processes) and the one the "
                    f"step opened ({len(opened)})"
                )
            else:
                self.detail = "not injected: the step opened no SSH connection"

        thread = threading.Thread(target=act, name=f"fault {self.case.id}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _done(self, detail: str) -> None:
        self.injected, self.detail = True, detail
