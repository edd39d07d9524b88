"""StackStorm test hosts: a fake root per host holding the shims of `st2/`, run as the host account.

StackStorm cannot be installed here. A `St2Host` is what a package-installed host has, under
`var/hosts/st2-<id>/root/` and owned by the host account: /usr/bin/st2 and st2ctl, a package
tool (apt-get, yum, or neither), sudo, /opt/stackstorm/st2/bin with the migration scripts of the
installed st2, packs, the datastore, logs and audit logs in /var/log/st2; its services are real
processes. The shims find the root from their own path, so the bot's plain non-interactive SSH
shell runs them by absolute path, with no PATH or rc file (`variables()` gives the values):

    {sudo} {bin}/st2ctl stop            {sudo} = <root>/usr/bin/sudo, {bin} = <root>/usr/bin
    {st2_bin}/st2-migrate-liveaction-executiondb --yes
    pgrep -f {root}/opt/stackstorm/     {root} = "" on a real host

The state (installed versions, fake repository, journal, datastore, fault switches) lives in
<root>/var/lib/st2-hostkit/; `st2/README.md` says what each shim does and prints.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pytest

from tests.hostkit.services import ROOT, Services

SHIMS = Path(__file__).with_name("st2")
HOSTS_DIR = ROOT / "var" / "hosts"
# The releases the fake repositories offer (3.10.0: the line in StackStorm's source tree).
RELEASES = (
    *("1.4.0", "1.5.0", "1.6.0", "2.0.0", "2.1.0", "2.2.0", "2.3.0", "2.4.0", "2.5.0", "2.6.0"),
    *("2.7.0", "2.8.0", "2.9.0", "2.10.0", "3.0.0", "3.1.0", "3.2.0", "3.3.0", "3.4.0", "3.5.0"),
    *("3.6.0", "3.7.0", "3.8.0", "3.8.1", "3.9.0", "3.10.0"),
)
PackageTool = Literal["apt", "yum"] | None
Layout = Literal["root", "dirs", "subtree"]


def version_key(version: str) -> tuple[int, ...]:
    """Versions compare as versions: 3.10 > 3.9, 3.5 == 3.5.0."""
    parts = [int(part) for part in version.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def default_repository(packages: Sequence[str]) -> dict[str, list[str]]:
    """StackStorm's repository: every release of st2, st2web and st2chatops, and of st2mistral
    and the installed enterprise packages (bwc-enterprise, ...) up to 3.2, where they ended."""
    core = ("st2", "st2web", "st2chatops")
    return {
        name: [r for r in RELEASES if name in core or version_key(r) <= (3, 2, 0)]
        for name in dict.fromkeys([*core, "st2mistral", *packages])
    }


def new_crypto_key() -> str:
    """A datastore key file in the format st2-generate-symmetric-crypto-key writes."""

    def b64() -> str:
        return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()

    key = {"hmacKey": {"hmacKeyString": b64(), "size": 256}, "aesKeyString": b64()}
    return json.dumps({**key, "mode": "CBC", "size": 256})


class St2Host:
    """One simulated StackStorm host, installed at `version` and, unless `running=False`,
    started. `packages` default to st2, st2web, st2chatops (and st2mistral before 3.3).
    `keys` are datastore items ({"name", "value", "secret"?, "scope"?, "user"?}); secrets are
    stored encrypted with the host's datastore key: `crypto_key`, a new one unless given."""

    def __init__(
        self,
        services: Services,
        *,
        version: str,
        package_tool: PackageTool = "apt",
        packs: Sequence[str] = (),
        keys: Sequence[Mapping[str, Any]] = (),
        audit_logs: int = 3,
        packages: Sequence[str] | None = None,
        repository: Mapping[str, Sequence[str]] | None = None,
        crypto_key: str | None = None,
        python_version: str | None = None,
        running: bool = True,
        require_root: bool = True,
    ) -> None:
        self.user = pwd.getpwnam(services.host_user)
        self.version = version
        self.home = HOSTS_DIR / f"st2-{secrets.token_hex(4)}"
        self.root = self.home / "root"
        self.bin = self.root / "usr/bin"  # st2, st2ctl, sudo, the package tool
        self.st2_bin = self.root / "opt/stackstorm/st2/bin"  # and the migration scripts
        self.sudo = self.bin / "sudo"
        self.hostkit = self.root / "usr/lib/st2-hostkit"  # the shims' own files
        self.state = self.root / "var/lib/st2-hostkit"
        self.log_dir = self.root / "var/log/st2"
        self.crypto_key = crypto_key or new_crypto_key()
        mistral = ("st2mistral",) if version_key(version) < (3, 3) else ()
        packages = packages or ("st2", "st2web", "st2chatops", *mistral)
        HOSTS_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copytree(SHIMS, self.hostkit, ignore=shutil.ignore_patterns("__pycache__", "*.md"))
        self.state.mkdir(parents=True)
        newest = version_key(version) >= (3, 9)
        settings = {
            "PACKAGE_TOOL": package_tool or "none",
            "PACKAGE_FORMAT": "rpm" if package_tool == "yum" else "deb",
            "RPM_DIST": "el9" if newest else "el8",
            "UBUNTU_CODENAME": "jammy" if newest else "focal",
            "PYTHON_VERSION": python_version
            or ("3.10.12" if newest else "3.8.10" if version_key(version) >= (3, 4) else "2.7.12"),
            "REQUIRE_ROOT": "1" if require_root else "0",
            "AUDIT_LOGS": str(audit_logs),
            "RUN_WAIT": "1",
        }
        (self.state / "settings").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        self._write_lists("installed", {name: [version] for name in packages})
        self._write_lists("repository", repository or default_repository(packages))
        (self.state / "keys.json").write_text(json.dumps(list(keys)))
        (self.root / "etc/st2/keys").mkdir(parents=True)
        (self.root / "etc/st2/keys/datastore_key.json").write_text(self.crypto_key)
        for path in [self.home, *self.home.rglob("*")]:
            os.lchown(path, self.user.pw_uid, self.user.pw_gid)
        self._check(self.run(str(self.hostkit / "install"), *packs))
        if running:
            self._check(self.run_sudo(str(self.bin / "st2ctl"), "start"))

    # -- where things are -------------------------------------------------------------------

    def variables(self) -> dict[str, str]:
        """This host's values of a runbook's host variables."""
        paths = {"root": self.root, "bin": self.bin, "st2_bin": self.st2_bin, "sudo": self.sudo}
        return {name: str(path) for name, path in paths.items()}

    # -- acting as the host account ---------------------------------------------------------

    def run(
        self, *argv: str, stdin: str = "", timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` as the host account in the host's home, with a login's bare environment
        (a non-zero exit is a result, not an error)."""
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": self.user.pw_dir, "LANG": "C.UTF-8"}
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"
        return subprocess.run(
            [runuser, "-u", self.user.pw_name, "--", *argv],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=self.home,
            check=False,
        )

    def run_sudo(self, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """`argv` through the host's sudo: bare names are looked up in the host's /usr/bin."""
        return self.run(str(self.sudo), *argv, stdin=stdin)

    def sh(self, script: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return self.run("/bin/sh", "-c", script, stdin=stdin)

    # -- looking at it ----------------------------------------------------------------------

    def installed(self) -> dict[str, str]:
        """Installed packages and their (upstream) versions."""
        lines = (self.state / "installed").read_text().splitlines()
        return dict(line.split(" ", 1) for line in lines if line)

    def journal(self) -> list[str]:
        return (self.state / "journal").read_text().splitlines()

    def migrations_finished(self) -> list[str]:
        """The migration scripts that ran to their end, in the order they did."""
        lines = (line.split() for line in self.journal())
        return [w[1] for w in lines if w[0] == "migration" and w[-1] == "finished"]

    def datastore(self) -> list[dict[str, Any]]:
        """The datastore items as stored (secrets hold ciphertext)."""
        return list(json.loads((self.state / "datastore.json").read_text()))

    def packs(self) -> list[str]:
        return sorted(p.name for p in (self.root / "opt/stackstorm/packs").iterdir())

    def audit_logs(self) -> list[Path]:
        return sorted(self.log_dir.glob("*.audit.log"))

    def running(self) -> dict[str, int]:
        """The service processes alive now, by name (their pid files, checked in /proc)."""
        alive = dict(self.processes())
        found = {}
        for pidfile in sorted((self.root / "var/run/st2").glob("*.pid")):
            pid = pidfile.read_text().strip()
            if pid.isdigit() and int(pid) in alive:
                found[pidfile.stem] = int(pid)
        return found

    def processes(self) -> list[tuple[int, str]]:
        """Every live process of this host: its command line names a file under the root."""
        found = []
        for entry in Path("/proc").iterdir():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError, UnicodeDecodeError):
                continue
            if entry.name.isdigit() and f"{self.root}/" in cmdline and state != "Z":
                found.append((int(entry.name), cmdline.strip()))
        return found

    # -- fault switches and the repository --------------------------------------------------

    def leave_running(self, service: str = "st2actionrunner") -> None:
        """The service ignores SIGTERM: `st2ctl stop` leaves it running; `kill -9` ends it."""
        self._write("faults/zombie", f"{service}\n")

    def fail_migration(self, script: str) -> None:
        """The migration script fails after its first step (its journal shows no end)."""
        self._write("faults/fail-migration", f"{script}\n")

    def clear_faults(self) -> None:
        for switch in (self.state / "faults").iterdir():
            switch.unlink()

    def set_repository(self, package: str, versions: Sequence[str]) -> None:
        """What the package tool offers for `package` (upstream versions, e.g. 3.8.1)."""
        lines = (self.state / "repository").read_text().splitlines()
        kept = [line for line in lines if line.split(" ", 1)[0] != package]
        self._write("repository", "\n".join([*kept, " ".join([package, *versions])]) + "\n")

    def cleanup(self) -> None:
        """Kill the host's processes and remove its directory."""
        for pid, _ in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.home, ignore_errors=True)

    # -- inside -----------------------------------------------------------------------------

    def _write_lists(self, name: str, entries: Mapping[str, Sequence[str]]) -> None:
        lines = (" ".join([key, *values]) + "\n" for key, values in entries.items())
        (self.state / name).write_text("".join(lines))

    def _write(self, name: str, text: str) -> None:
        path = self.state / name
        path.write_text(text)
        os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def _check(self, done: subprocess.CompletedProcess[str]) -> None:
        if done.returncode != 0:
            raise RuntimeError(f"{done.args} failed on {self.home}:\n{done.stdout}{done.stderr}")


@pytest.fixture
def st2_host_factory(services: Services) -> Iterator[Callable[..., St2Host]]:
    """Makes `St2Host`s (keyword arguments as `St2Host`'s); all are removed after the test."""
    hosts: list[St2Host] = []

    def make(**options: Any) -> St2Host:
        host = St2Host.__new__(St2Host)
        hosts.append(host)  # listed first, so a host that fails half-way is removed too
        host.__init__(services, **options)  # type: ignore[misc]
        return host

    yield make
    for host in hosts:
        if hasattr(host, "root"):
            host.cleanup()


@pytest.fixture
def st2_pack_repo_factory(services: Services) -> Iterator[Callable[..., str]]:
    """Makes bare git repositories of packs (see st2/make-pack-repo) that the host account can
    clone; `make("pack_a")` (layout "root") or `make("a", "b", layout="dirs"|"subtree")`
    returns the repository's file:// URL."""
    where = HOSTS_DIR / f"st2-packs-{secrets.token_hex(4)}"
    user = pwd.getpwnam(services.host_user)
    made: list[str] = []

    def make(*packs: str, layout: Layout = "root") -> str:
        argv = [str(SHIMS / "make-pack-repo"), str(where / str(len(made))), layout, *packs]
        done = subprocess.run(argv, check=True, capture_output=True, text=True)
        for path in [where, *where.rglob("*")]:
            os.lchown(path, user.pw_uid, user.pw_gid)
        made.append(f"file://{done.stdout.strip()}")
        return made[-1]

    yield make
    shutil.rmtree(where, ignore_errors=True)
