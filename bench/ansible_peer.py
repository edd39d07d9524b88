"""`ansible-playbook` as a peer in `bench.step_overhead`: the same ten commands on the same sshd.

ansible-core comes from PyPI into a throwaway virtualenv under `var/bench/` on first use; it is
never a requirement of the project. The playbook reaches the sshd as the bot does: the server's
client key and known_hosts only, host keys checked. Ansible's own SSH plugin drives OpenSSH with
pipelining and a ControlMaster that persists between runs, opened by a warm-up run before timing,
as raw paramiko and OpenSSH are connected before timing. Each timed run is a whole
`ansible-playbook` process; a callback plugin also clocks the ten tasks alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from tests.hostkit.services import ROOT
from tests.hostkit.sshd import SshServer

ANSIBLE_CORE = "ansible-core==2.19.14"  # pinned so that figures compare from one run to the next
VENV = ROOT / "var" / "bench" / "ansible"
PLAYBOOK = VENV / "bin" / "ansible-playbook"
INTERPRETER = "/usr/bin/python3"  # the host's Python for the shell module (no discovery run)
MODULES = {"shell module": "ansible.builtin.shell", "raw module": "ansible.builtin.raw"}

# Writes the seconds from the start of the first task to the end of the last to $BENCH_SPAN_FILE.
_TIMER = """\
import os, time
from ansible.plugins.callback import CallbackBase

class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_span"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.first = self.last = None

    def v2_playbook_on_task_start(self, task, is_conditional):
        if self.first is None:
            self.first = time.perf_counter()

    def v2_runner_on_ok(self, result):
        self.last = time.perf_counter()

    def v2_playbook_on_stats(self, stats):
        with open(os.environ["BENCH_SPAN_FILE"], "w") as out:
            out.write(repr(self.last - self.first))
"""

_CONFIG = """\
[defaults]
inventory = {dir}/inventory.ini
host_key_checking = True
gathering = explicit
interpreter_python = {interpreter}
callback_plugins = {dir}/callback_plugins
callbacks_enabled = bench_span
local_tmp = {dir}/local-tmp
retry_files_enabled = False
forks = 5

[ssh_connection]
pipelining = True
control_path_dir = {dir}/cp
ssh_args = -F /dev/null -o ControlMaster=auto -o ControlPersist=120s -o IdentitiesOnly=yes
  -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={known_hosts}
  -o GlobalKnownHostsFile=/dev/null
"""


def install() -> str | None:
    """Make sure `ansible-playbook` is in the throwaway venv; None, or why it cannot be."""
    if PLAYBOOK.exists() and ANSIBLE_CORE.split("==")[1] in _version():
        return None
    print(f"installing {ANSIBLE_CORE} into {VENV.relative_to(ROOT)} (once) ...", flush=True)
    VENV.parent.mkdir(parents=True, exist_ok=True)
    log = VENV.parent / "ansible-install.log"
    with log.open("w") as out:
        steps = (
            [sys.executable, "-m", "venv", "--clear", str(VENV)],
            [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", ANSIBLE_CORE],
        )
        for argv in steps:
            if subprocess.run(argv, stdout=out, stderr=out, check=False).returncode != 0:
                tail = log.read_text(errors="replace").strip().splitlines()[-3:]
                return f"`{' '.join(argv[-3:])}` failed: {' / '.join(tail)}"
    return None if PLAYBOOK.exists() else f"{PLAYBOOK} is missing after the install"


def _version() -> str:
    done = subprocess.run([str(PLAYBOOK), "--version"], capture_output=True, text=True)
    return done.stdout.splitlines()[0] if done.returncode == 0 and done.stdout else ""


def playbooks(
    server: SshServer, workdir: Path, commands: tuple[str, ...], stack: ExitStack
) -> tuple[dict[str, Callable[[], object]], dict[str, list[float]]]:
    """A runner of the playbook per module, warmed up (master connection open), and where each
    records the seconds its ten tasks took."""
    home = workdir / "ansible"
    (home / "callback_plugins").mkdir(parents=True)
    (home / "callback_plugins" / "bench_span.py").write_text(_TIMER)
    (home / "cp").mkdir()
    (home / "ansible.cfg").write_text(
        _CONFIG.format(dir=home, interpreter=INTERPRETER, known_hosts=server.known_hosts)
    )
    (home / "inventory.ini").write_text(
        f"host-1 ansible_host=127.0.0.1 ansible_port={server.port} ansible_user={server.user} "
        f"ansible_ssh_private_key_file={server.client_key}\n"
    )
    span_file = home / "span"
    env = {**os.environ, "ANSIBLE_CONFIG": str(home / "ansible.cfg")}
    env.update(BENCH_SPAN_FILE=str(span_file), ANSIBLE_NOCOLOR="1")
    stack.callback(_close_masters, home / "cp")
    runs: dict[str, Callable[[], object]] = {}
    spans: dict[str, list[float]] = {}
    for label, module in MODULES.items():
        playbook = home / f"{module.rsplit('.', 1)[1]}.yml"
        tasks = "".join(f"    - {module}: {c}\n" for c in commands)
        playbook.write_text(f"- hosts: host-1\n  gather_facts: false\n  tasks:\n{tasks}")
        spans[label] = []

        def run(playbook: Path = playbook, spans: list[float] = spans[label]) -> None:
            done = subprocess.run(
                [str(PLAYBOOK), str(playbook)], env=env, capture_output=True, text=True
            )
            if done.returncode != 0:
                raise RuntimeError(f"ansible-playbook failed:\n{done.stdout[-2000:]}")
            spans.append(float(span_file.read_text()))

        run()  # opens the master connection, which the timed runs reuse
        spans[label].clear()
        runs[f"ansible-playbook, {label}"] = run
    return runs, spans


def _close_masters(folder: Path) -> None:
    for socket in folder.iterdir():
        subprocess.run(
            ["ssh", "-F", "/dev/null", "-o", f"ControlPath={socket}", "-O", "exit", "host"],
            capture_output=True,
            timeout=30,
        )
