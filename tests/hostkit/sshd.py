"""An OpenSSH server on a loopback port, for the tests of the SSH adapter and the plans run over it.

Each `SshServer` owns a directory under `var/ssh/` of the checkout with its host key, a client key,
`authorized_keys`, `known_hosts`, config and log. It runs the system's `/usr/sbin/sshd` with that
config only (never `/etc/ssh`), as root, and accepts the unprivileged `HOST_USER` with the client
key. Starting takes a few tens of milliseconds, so tests that disturb the server get their own.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bot.domain.inventory import SshTarget
from tests.hostkit.services import HOST_USER, ROOT, ServiceError, ensure_host_user, free_port

SSHD = Path("/usr/sbin/sshd")
SSH_ROOT = ROOT / "var" / "ssh"
PRIVSEP_DIR = Path("/run/sshd")  # sshd refuses to start without its privilege separation dir

_CONFIG = """\
ListenAddress 127.0.0.1:{port}
HostKey {dir}/host_ed25519
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin no
AllowUsers {user}
AllowTcpForwarding no
X11Forwarding no
PrintMotd no
PrintLastLog no
UseDNS no
MaxSessions 100
MaxStartups 200
LogLevel VERBOSE
Subsystem sftp internal-sftp
"""


def generate_ed25519(path: Path, comment: str = "upgradebot-test") -> str:
    """Write a new unencrypted ed25519 private key (OpenSSH format, mode 0600); return the
    public key line `ssh-ed25519 AAAA... comment`."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    path.write_bytes(private)
    path.chmod(0o600)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    line = f"{public.decode()} {comment}"
    path.with_name(path.name + ".pub").write_text(line + "\n")
    return line


def known_hosts_line(host_pattern: str, public_key: str, *, hashed: bool = False) -> str:
    """One known_hosts entry; `hashed` writes it the way `ssh-keygen -H` does (`|1|salt|hmac`)."""
    key_type, key_data = public_key.split()[:2]
    if hashed:
        salt = secrets.token_bytes(20)
        digest = hmac.new(salt, host_pattern.encode(), hashlib.sha1).digest()
        b64 = base64.b64encode
        host_pattern = f"|1|{b64(salt).decode()}|{b64(digest).decode()}"
    return f"{host_pattern} {key_type} {key_data}"


def run_as_host_user(
    script: str, *, timeout: float = 30.0, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a shell script locally as `HOST_USER`: to arrange files a test host then works on."""
    return subprocess.run(
        ["runuser", "-u", HOST_USER, "--", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
        cwd="/",
    )


SETTLE = 1.0  # seconds to wait for a new connection's second sshd process (`session_pids`)


def process_tree() -> dict[int, list[int]]:
    """Every live process's children, by parent pid, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone while we looked
        # the command name may hold spaces and parentheses: the fields we need follow the last ')'
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def descendants(pid: int, tree: dict[int, list[int]] | None = None) -> list[int]:
    """Every live process below `pid` (children first, then theirs)."""
    children = process_tree() if tree is None else tree
    found: list[int] = []
    queue = [pid]
    while queue:
        below = children.get(queue.pop(0), [])
        found.extend(below)
        queue.extend(below)
    return found


def kill(pids: list[int], sig: signal.Signals = signal.SIGKILL) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


class SshServer:
    """One sshd listening on 127.0.0.1 with its own keys; `target()` is how the bot reaches it."""

    def __init__(
        self, *, user: str = HOST_USER, directory: Path | None = None, config: str = ""
    ) -> None:
        self.user = user
        self.extra_config = config  # lines added to sshd_config, e.g. "Ciphers aes256-ctr"
        self.directory = directory or SSH_ROOT / f"{os.getpid()}-{secrets.token_hex(4)}"
        self.port = 0
        self.host_public_key = ""
        self.client_public_key = ""
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def host_key(self) -> Path:
        return self.directory / "host_ed25519"

    @property
    def client_key(self) -> Path:
        return self.directory / "client_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "known_hosts"

    @property
    def log(self) -> Path:
        return self.directory / "sshd.log"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise ServiceError("sshd is not running: call start() first")
        return self._process.pid

    def start(self, timeout: float = 10.0) -> SshServer:
        """Write keys and config, start sshd and wait until it listens. Returns self."""
        if not SSHD.exists():
            raise ServiceError(f"{SSHD} is missing: install openssh-server (`make setup`).")
        ensure_host_user()
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        self.directory.mkdir(parents=True, exist_ok=True)
        for folder in (SSH_ROOT, self.directory):
            folder.chmod(0o755)  # the login user reads authorized_keys through these
        self.host_public_key = generate_ed25519(self.host_key, "upgradebot-test-host")
        self.client_public_key = generate_ed25519(self.client_key, "upgradebot-test-client")
        (self.directory / "authorized_keys").write_text(self.client_public_key + "\n")
        for _ in range(3):  # a free port can be taken between choosing it and sshd binding it
            self.port = free_port()
            self.write_known_hosts(self.known_hosts)
            if self._launch(timeout):
                return self
        raise ServiceError(f"sshd did not start. Log tail:\n{self.log_text()[-2000:]}")

    def _launch(self, timeout: float) -> bool:
        config = self.directory / "sshd_config"
        text = _CONFIG.format(port=self.port, dir=self.directory, user=self.user)
        config.write_text(text + self.extra_config + "\n")
        self.log.write_bytes(b"")
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        ready = f"Server listening on 127.0.0.1 port {self.port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready in self.log_text():
                return True
            if self._process.poll() is not None:
                self._process = None
                return False
            time.sleep(0.005)
        self.stop()
        raise ServiceError(f"sshd did not listen within {timeout:g}s. Log:\n{self.log_text()}")

    def stop(self) -> None:
        """Stop the listener and every process it spawned (sessions, their commands). Idempotent."""
        if self._process is None:
            return
        kill([*descendants(self._process.pid), self._process.pid])
        self._process.wait(timeout=10)
        self._process = None

    def remove(self) -> None:
        """Stop and delete the server's directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def target(self, **overrides: Any) -> SshTarget:
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "user": self.user,
            "key_file": self.client_key,
            "known_hosts": self.known_hosts,
            "connect_timeout": 5.0,
        }
        values.update(overrides)
        return SshTarget(**values)

    def write_known_hosts(
        self, path: Path, *, public_key: str | None = None, hashed: bool = False
    ) -> Path:
        """Write a known_hosts naming this server (`[127.0.0.1]:PORT`) with its key, or with
        `public_key` instead (a wrong key, to test that a changed host key is refused)."""
        pattern = f"[127.0.0.1]:{self.port}"
        line = known_hosts_line(pattern, public_key or self.host_public_key, hashed=hashed)
        path.write_text(line + "\n")
        return path

    def known_hosts_with_wrong_key(self) -> Path:
        """A known_hosts that lists another ed25519 key for this server."""
        other = generate_ed25519(self.directory / "other_ed25519", "not-this-host")
        return self.write_known_hosts(self.directory / "known_hosts_wrong", public_key=other)

    def unauthorized_client_key(self) -> Path:
        """A client key the server does not accept."""
        path = self.directory / "stranger_ed25519"
        generate_ed25519(path, "stranger")
        return path

    def session_pids(self, *, settle: float = 0.0) -> list[int]:
        """The sshd processes serving open connections (monitor and user half of each). sshd
        forks a connection's user half just after authentication, a moment after the client saw
        it succeed; with `settle`, wait up to that many seconds for every connection to show
        its second half, so none is missed."""
        deadline = time.monotonic() + settle
        while True:
            tree = process_tree()
            pids = [pid for pid in descendants(self.pid, tree) if process_name(pid) == "sshd"]
            whole = all(
                set(tree.get(monitor, ())) & set(pids) for monitor in tree.get(self.pid, ())
            )
            if whole or time.monotonic() >= deadline:
                return pids
            time.sleep(0.002)

    def kill_sessions(self) -> list[int]:
        """Kill every sshd serving a connection, as a crash or a dropped link would; the listener
        keeps running. The commands those sessions started are left alone. Returns the pids."""
        killed = self.session_pids(settle=SETTLE)
        kill(killed)
        return killed

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def __enter__(self) -> SshServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.remove()


def _serve() -> Iterator[SshServer]:
    server = SshServer().start()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def ssh_server() -> Iterator[SshServer]:
    """A fresh sshd for one test: for tests that kill sessions or change the server."""
    yield from _serve()


@pytest.fixture(scope="module")
def ssh_server_module() -> Iterator[SshServer]:
    """One sshd shared by the tests of a module that only run commands over it."""
    yield from _serve()
