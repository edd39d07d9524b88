"""Tools that break the test hosts on purpose, and mend them again.

- `Forwarder` relays a unix socket (the Docker Engine's) or a TCP port (the registry's) to the real
  service. Point an instance at it, and `cut()` makes the service unreachable at once: new
  connections are refused and open ones drop, as when dockerd dies or the registry's link goes.
  `restore()` listens again on the same address.
- `ScriptSwitches` adds switches to a host's installed copy of its scripts' shared library (a
  MyST Studio home's `lib/myst.sh`, a proxy home's `lib/proxy.sh`), read from `<home>/faults/`:
  `hold-<script>` parks the script at its start until released, so a fault can be timed to land
  while the step runs; `hang-<script>` makes it sleep past any timeout; `fail-<script>` makes it
  exit 1 (the MyST scripts have that one already: `MystHost.fail_script`).
- `leftovers` / `settle` find and end the commands a dropped SSH session left running.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path

from tests.hostkit.sshd import kill

_RELAY_BYTES = 64 * 1024
_ACCEPT_POLL = 0.05  # how soon a cut listener stops accepting

# Appended to the installed library; `{home}` and `{script}` name the library's own variables.
_HOOKS = """
# --- fault switches of the fault matrix (tests/hostkit/faults.py), read from <home>/faults/ ---
fm_switch="${home}/faults"
fm_name=$(basename -- "${script}" .sh)
if [ -f "$fm_switch/fail-$fm_name" ]; then
    fm_message=$(head -n 1 "$fm_switch/fail-$fm_name")
    printf '%s: %s\\n' "${script}" "${{fm_message:-failed (fault switch)}}" >&2
    exit 1
fi
if [ -f "$fm_switch/hold-$fm_name" ]; then
    : >"$fm_switch/held-$fm_name"
    while [ -f "$fm_switch/hold-$fm_name" ]; do sleep 0.02; done
fi
[ ! -f "$fm_switch/hang-$fm_name" ] || sleep 3600
"""


class Forwarder:
    """Relays connections from `listen` to `upstream`: both unix socket paths, or both
    `(host, port)` pairs. Runs on daemon threads of the test process until `close()`."""

    def __init__(self, listen: Path | tuple[str, int], upstream: Path | tuple[str, int]) -> None:
        self.listen, self.upstream = listen, upstream
        self._family = socket.AF_UNIX if isinstance(listen, Path) else socket.AF_INET
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        """`unix:///path` for a socket, `host:port` for TCP."""
        if isinstance(self.listen, Path):
            return f"unix://{self.listen}"
        return f"{self.listen[0]}:{self.listen[1]}"

    @property
    def up(self) -> bool:
        return self._thread is not None

    def start(self) -> Forwarder:
        """Listen (again) on the same address. Idempotent."""
        if self._thread is not None:
            return self
        listener = socket.socket(self._family, socket.SOCK_STREAM)
        if isinstance(self.listen, Path):
            with contextlib.suppress(FileNotFoundError):
                self.listen.unlink()
            listener.bind(str(self.listen))
            self.listen.chmod(0o666)  # the host account's scripts connect to it too
        else:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(self.listen)
        listener.listen(64)
        listener.settimeout(_ACCEPT_POLL)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._accept, args=(listener, self._stop), name=f"relay {self.address}"
        )
        self._thread.daemon = True
        self._thread.start()
        return self

    restore = start

    def cut(self) -> None:
        """Refuse new connections and drop the open ones. The unix socket's file stays, so a
        client gets `connection refused`, as from a daemon that died. Idempotent."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        with self._lock:
            dropped, self._open = self._open, set()
        for sock in dropped:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.cut()
        if isinstance(self.listen, Path):
            with contextlib.suppress(FileNotFoundError):
                self.listen.unlink()

    def _accept(self, listener: socket.socket, stop: threading.Event) -> None:
        with listener:
            while not stop.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                client.settimeout(None)
                upstream = socket.socket(self._family, socket.SOCK_STREAM)
                try:
                    upstream.connect(
                        str(self.upstream) if isinstance(self.upstream, Path) else self.upstream
                    )
                except OSError:
                    client.close()
                    upstream.close()
                    continue
                with self._lock:
                    self._open |= {client, upstream}
                for source, target in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._relay, args=(source, target), daemon=True).start()

    def _relay(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(_RELAY_BYTES):
                target.sendall(data)
            target.shutdown(socket.SHUT_WR)  # pass the half-close on: HTTP streams rely on it
        except OSError:
            with contextlib.suppress(OSError):
                target.shutdown(socket.SHUT_RDWR)


class ScriptSwitches:
    """The fault-matrix switches of one host home (see the module's docstring)."""

    def __init__(self, home: Path, library: str, *, home_var: str, script_var: str) -> None:
        self.home = home
        self.folder = home / "faults"
        self._library = home / "lib" / library
        self._hooks = _HOOKS.format(home=home_var, script=script_var)

    @classmethod
    def of_myst(cls, home: Path) -> ScriptSwitches:
        return cls(home, "myst.sh", home_var="MYST_HOME", script_var="MYST_SCRIPT")

    @classmethod
    def of_proxy(cls, home: Path) -> ScriptSwitches:
        return cls(home, "proxy.sh", home_var="PROXY_HOME", script_var="PROXY_SCRIPT")

    def install(self) -> ScriptSwitches:
        """Append the switches to the installed library (once) and make `<home>/faults/`."""
        text = self._library.read_text()
        if self._hooks not in text:
            self._library.write_text(text.rstrip("\n") + "\n" + self._hooks)
        self.folder.mkdir(exist_ok=True)
        owner = self.home.stat()
        os.chown(self.folder, owner.st_uid, owner.st_gid)
        return self

    def fail(self, script: str, message: str) -> None:
        self._set("fail", script, message)

    def hang(self, script: str) -> None:
        self._set("hang", script)

    def hold(self, script: str) -> None:
        """Park `script` at its start from now on; `wait_held` tells when it got there."""
        with contextlib.suppress(FileNotFoundError):
            (self.folder / f"held-{_name(script)}").unlink()
        self._set("hold", script)

    def wait_held(self, script: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (self.folder / f"held-{_name(script)}").exists():
                return True
            time.sleep(0.01)
        return False

    def release(self, script: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.folder / f"hold-{_name(script)}").unlink()

    def clear(self) -> None:
        for switch in self.folder.glob("*"):
            switch.unlink()

    def _set(self, kind: str, script: str, text: str = "") -> None:
        path = self.folder / f"{kind}-{_name(script)}"
        path.write_text(text)
        owner = self.home.stat()
        os.chown(path, owner.st_uid, owner.st_gid)


def _name(script: str) -> str:
    return script.removesuffix(".sh")


def leftovers(uid: int, needles: tuple[str, ...]) -> list[int]:
    """Processes of `uid` whose command line mentions one of `needles` (a home, a container)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone while we looked
        if any(needle in argv for needle in needles):
            found.append(int(entry.name))
    return found


def quiesce(uid: int, needles: tuple[str, ...], timeout: float = 5.0) -> list[int]:
    """Wait for the commands a dropped session left behind to end on their own; returns the
    pids still running after `timeout`."""
    deadline = time.monotonic() + timeout
    while (pids := leftovers(uid, needles)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return pids


def settle(uid: int, needles: tuple[str, ...], timeout: float = 5.0) -> list[int]:
    """`quiesce`, then kill what is still running. Returns the pids killed."""
    pids = quiesce(uid, needles, timeout)
    kill(pids, signal.SIGKILL)
    return pids


def copy_tree(source: Path, dest: Path) -> Path:
    """A fresh copy of `source` at `dest` (what was there goes)."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(source, dest)
    return dest
