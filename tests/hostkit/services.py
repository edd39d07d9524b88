"""Start (once) and find the shared services the integration tests run against.

`python -m tests.hostkit up` starts them; the pytest session does the same if they are not up.
They live under `var/services/` of the checkout: a Docker Engine on its own socket, Debian's
`docker-registry` and a PostgreSQL cluster, each on a free loopback port. Starting is idempotent:
a service already answering is left alone. Anything that cannot start is an error, never a skip.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATE_DIR = Path(os.environ.get("BOT_TEST_SERVICES_DIR", ROOT / "var" / "services"))
HOST_USER = "upgradebot-host"  # the unprivileged account test hosts log in as over SSH
PG_BIN = Path("/usr/lib/postgresql/15/bin")


class ServiceError(RuntimeError):
    """A test service could not be started; the message says which and why."""


@dataclass(frozen=True)
class Services:
    docker_host: str
    registry: str  # host:port
    database_url: str
    host_user: str

    @property
    def registry_url(self) -> str:
        return f"http://{self.registry}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait(what: str, ready, log: Path, seconds: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
    raise ServiceError(f"{what} did not come up within {seconds:.0f}s. Log tail:\n{tail}")


def _spawn(argv: list[str], log: Path, **kwargs) -> None:  # type: ignore[no-untyped-def]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        subprocess.Popen(
            argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True, **kwargs
        )


def _require(binary: str) -> str:
    path = shutil.which(binary) or (str(PG_BIN / binary) if (PG_BIN / binary).exists() else None)
    if not path:
        raise ServiceError(f"`{binary}` is not installed: run `make setup` (as root) first.")
    return path


def ensure_host_user() -> None:
    """The test hosts' login account: no password (`*`, not locked, so key logins work)."""
    try:
        pwd.getpwnam(HOST_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--create-home",
                "--shell",
                "/bin/sh",
                "--groups",
                "docker",
                "--password",
                "*",
                HOST_USER,
            ],
            check=True,
        )
    # sshd without PAM refuses even key logins to an account whose password field is "!" (locked)
    subprocess.run(["usermod", "--password", "*", HOST_USER], check=True, capture_output=True)


def _docker_ping(sock: Path) -> bool:
    if not sock.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(1)
            s.connect(str(sock))
            s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            return b"OK" in s.recv(1024)
    except OSError:
        return False


def _start_dockerd(base: Path) -> str:
    sock = base / "docker.sock"
    if not _docker_ping(sock):
        _spawn(
            [
                _require("dockerd"),
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--host",
                f"unix://{sock}",
                "--group",
                "docker",
                "--data-root",
                str(base / "data"),
                "--exec-root",
                str(base / "exec"),
                "--pidfile",
                str(base / "dockerd.pid"),
            ],
            base / "dockerd.log",
        )
        _wait("dockerd", lambda: _docker_ping(sock), base / "dockerd.log", 60)
    return f"unix://{sock}"


def _start_registry(base: Path, port: int) -> None:
    if _answers(port):
        return
    (base / "data").mkdir(parents=True, exist_ok=True)
    config = base / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {base / 'data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    _spawn([_require("docker-registry"), "serve", str(config)], base / "registry.log")
    _wait("docker-registry", lambda: _answers(port), base / "registry.log")


def _start_postgres(base: Path, port: int) -> str:
    url = f"postgresql+psycopg://bot:bot@127.0.0.1:{port}/bot_test"
    if _answers(port):
        return url
    data = base / "data"
    pg = pwd.getpwnam("postgres")
    base.mkdir(parents=True, exist_ok=True)
    os.chown(base, pg.pw_uid, pg.pw_gid)
    as_pg = ["runuser", "-u", "postgres", "--"]
    if not (data / "PG_VERSION").exists():
        subprocess.run(
            [
                *as_pg,
                _require("initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
        )
    log = base / "postgres.log"
    subprocess.run(
        [
            *as_pg,
            _require("pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(log),
            "-w",
            "start",
            "-o",
            f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off",
        ],
        check=True,
        capture_output=True,
    )
    _wait("postgres", lambda: _answers(port), log)
    psql = [*as_pg, "psql", "-h", str(base), "-p", str(port), "-U", "postgres", "-q", "-c"]
    subprocess.run([*psql, "CREATE ROLE bot LOGIN PASSWORD 'bot'"], capture_output=True)
    subprocess.run([*psql, "CREATE DATABASE bot_test OWNER bot"], capture_output=True)
    return url


def up() -> Services:
    """Start whatever is not running yet and return where everything is."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    state_file = STATE_DIR / "ports.json"
    ports = json.loads(state_file.read_text()) if state_file.exists() else {}
    ports.setdefault("registry", free_port())
    ports.setdefault("postgres", free_port())
    state_file.write_text(json.dumps(ports))
    ensure_host_user()
    services = Services(
        docker_host=_start_dockerd(STATE_DIR / "docker"),
        registry=f"127.0.0.1:{ports['registry']}",
        database_url=_start_postgres(STATE_DIR / "postgres", ports["postgres"]),
        host_user=HOST_USER,
    )
    _start_registry(STATE_DIR / "registry", ports["registry"])
    (STATE_DIR / "services.json").write_text(json.dumps(asdict(services), indent=2))
    return services


def down() -> None:
    """Stop what `up` started (data stays, so the next `up` is fast)."""
    pg = STATE_DIR / "postgres" / "data"
    if (pg / "postmaster.pid").exists():
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                _require("pg_ctl"),
                "-D",
                str(pg),
                "-m",
                "fast",
                "stop",
            ],
            capture_output=True,
        )
    subprocess.run(["pkill", "-f", f"docker-registry serve {STATE_DIR}"], capture_output=True)
    pidfile = STATE_DIR / "docker" / "dockerd.pid"
    if pidfile.exists():
        subprocess.run(["kill", pidfile.read_text().strip()], capture_output=True)
