"""A real reverse proxy in front of a blue and a green MyST Studio host, switched like a balancer.

A `ProxyHost` is Debian's nginx run by the host account itself, never the system's: its home under
`var/proxy/` is laid out from `proxy/` (`bin/switch.sh <blue|green>`, `bin/active.sh`, `lib/`,
`conf/`). All of nginx runs unprivileged on a free loopback port, so the account the bot logs in as
can reload it. A `Poller` GETs the proxy every few ms and reports failures and versions, in order.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import math
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.hostkit.myst import _CONSOLE_VERSION, MystHost
from tests.hostkit.services import ROOT, ServiceError, Services, free_port

PROXY_DIR = Path(__file__).with_name("proxy")
PROXY_ROOT = ROOT / "var" / "proxy"
COLOR_HEADER = "X-Proxy-Color"  # which color's workers answered, set by the proxy
LOGIN_PATH = "/usr/local/bin:/usr/bin:/bin"  # as an SSH login's: no /usr/sbin, where nginx is
Done = subprocess.CompletedProcess[str]


@dataclass(frozen=True, kw_only=True)
class Sample:
    """One GET of the proxy: what came back, or why it failed (`error`)."""

    at: float  # when it was sent, in seconds of the poller's clock
    elapsed: float
    status: int | None = None
    version: str | None = None
    color: str | None = None
    error: str | None = None


def _in_order(values: list[str | None]) -> tuple[str, ...]:
    """Each value once per run of equal values: (a, a, b, a) -> (a, b, a)."""
    return tuple(value for value, _ in itertools.groupby(v for v in values if v is not None))


@dataclass(frozen=True, kw_only=True)
class PollReport:
    """What a poller saw, in the order sent; `versions_seen` names each run of equal ones once."""

    requests: int
    failures: tuple[Sample, ...]
    versions_seen: tuple[str, ...]
    samples: tuple[Sample, ...]
    duration: float

    def versions(self, *, after: float = 0.0, before: float = math.inf) -> tuple[str, ...]:
        """`versions_seen` of the requests sent after `after` and answered before `before`."""
        chosen = [s for s in self.samples if s.at > after and s.at + s.elapsed < before]
        return _in_order([s.version for s in chosen])


class Poller:
    """GETs `url` on a thread every `interval` seconds (a fixed rate), each time on a new
    connection like a new visitor: a reload closes idle keep-alive connections, and a request sent
    on one just then is lost unless the client retries it (browsers do, for a GET)."""

    def __init__(self, url: str, *, interval: float = 0.02, timeout: float = 2.0) -> None:
        parts = urlsplit(url)
        self.url, self.interval, self.timeout = url, interval, timeout
        self._address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._samples: list[Sample] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"poller {url}", daemon=True)
        self._started = 0.0

    def start(self) -> Poller:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def now(self) -> float:
        """The poller's clock (what `Sample.at` counts in): seconds since it started."""
        return time.monotonic() - self._started

    def stop(self) -> PollReport:
        """Stop after the request in flight; report everything. Idempotent."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.timeout + 5)
        return self.report()

    def report(self) -> PollReport:
        samples = tuple(self._samples)  # copying a list is atomic under the GIL
        return PollReport(
            requests=len(samples),
            failures=tuple(s for s in samples if s.error is not None),
            versions_seen=_in_order([s.version for s in samples]),
            samples=samples,
            duration=self.now(),
        )

    def wait_for(self, requests: int, timeout: float = 10.0) -> None:
        """Wait until `requests` more requests than now have been answered (or have failed)."""
        target, deadline = len(self._samples) + requests, time.monotonic() + timeout
        while len(self._samples) < target:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise TimeoutError(f"the poller made fewer than {requests} requests in {timeout}s")
            time.sleep(self.interval)

    def _loop(self) -> None:
        due = time.monotonic()
        while not self._stopping.is_set():
            self._samples.append(fetch(*self._address, timeout=self.timeout, sent_at=self.now()))
            due += self.interval
            self._stopping.wait(max(0.0, due - time.monotonic()))


def fetch(host: str, port: int, *, timeout: float, sent_at: float = 0.0) -> Sample:
    """GET `/` on a new connection and judge the answer: a console page with a version, status 200.
    `sent_at` is when it was sent, on the caller's clock."""
    begun = time.monotonic()
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", "/", headers={"Connection": "close"})
        response = connection.getresponse()
        page = response.read().decode(errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        failed = f"{type(exc).__name__}: {exc}"
        return Sample(at=sent_at, elapsed=time.monotonic() - begun, error=failed)
    finally:
        connection.close()
    match = _CONSOLE_VERSION.search(page)
    error = f"HTTP {response.status}" if response.status != 200 else None
    if error is None and match is None:
        error = "no version in the page"
    return Sample(
        at=sent_at,
        elapsed=time.monotonic() - begun,
        status=response.status,
        version=match.group(1) if match else None,
        color=response.getheader(COLOR_HEADER),
        error=error,
    )


class ProxyHost:
    """One nginx on 127.0.0.1 in front of two consoles, run and switched by the host account."""

    def __init__(
        self, services: Services, blue_port: int, green_port: int, *, active: str = "blue"
    ) -> None:
        self.backends = {"blue": f"127.0.0.1:{blue_port}", "green": f"127.0.0.1:{green_port}"}
        self.home = PROXY_ROOT / f"{os.getpid()}-{secrets.token_hex(4)}"
        self.config = self.home / "conf" / "nginx.conf"
        self.user = pwd.getpwnam(services.host_user)
        self.env = {"PATH": LOGIN_PATH, "HOME": self.user.pw_dir, "LANG": "C.UTF-8"}
        self.port = 0
        self.started_in = 0.0  # seconds from launching nginx to its first answer
        self._active = active
        self._process: subprocess.Popen[bytes] | None = None
        self._pollers: list[Poller] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 10.0) -> ProxyHost:
        """Lay out the home, start nginx, wait until it answers."""
        nginx = shutil.which("nginx", path="/usr/sbin:/usr/bin")
        if nginx is None:
            raise ServiceError("nginx is not installed: run `make setup` (it installs nginx-light)")
        PROXY_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
        shutil.copytree(PROXY_DIR, self.home)
        for sub in ("etc", "logs", "run", "tmp"):
            (self.home / sub).mkdir()
        (self.home / "logs" / "nginx.out").touch()  # before the chown: nginx's stderr goes there
        upstream = (self.home / "conf" / "upstream.template").read_text()
        for key, value in (("@COLOR@", self._active), ("@BACKEND@", self.backends[self._active])):
            upstream = upstream.replace(key, value)
        (self.home / "conf" / "upstream.conf").write_text(upstream)
        template = (self.home / "conf" / "nginx.conf.template").read_text()
        for _ in range(3):  # a free port can be taken between choosing it and nginx binding it
            self.port = free_port()
            self.config.write_text(
                template.replace("@HOME@", str(self.home)).replace("@PORT@", f"{self.port}")
            )
            (self.home / "etc" / "proxy.env").write_text(
                f"NGINX={nginx}\nPROXY_URL={self.url}\n"
                f"BLUE={self.backends['blue']}\nGREEN={self.backends['green']}\n"
            )
            for item in [self.home, *self.home.rglob("*")]:
                shutil.chown(item, self.user.pw_uid, self.user.pw_gid)
            if self._launch(nginx, timeout):
                return self
        raise ServiceError(f"nginx could not bind a port. Log:\n{self.error_log()[-2000:]}")

    def _launch(self, nginx: str, timeout: float) -> bool:
        """Start nginx; True once it answers, False when its port was taken meanwhile."""
        begun = time.monotonic()
        with (self.home / "logs" / "nginx.out").open("ab") as out:
            self._process = subprocess.Popen(
                [nginx, "-c", str(self.config)],  # `daemon off`: this is the master
                stdout=out,
                stderr=out,
                user=self.user.pw_uid,
                group=self.user.pw_gid,
                extra_groups=[],
                env=self.env,
                cwd=self.home,
                start_new_session=True,
            )
        while time.monotonic() < begun + timeout:
            if self._process.poll() is not None:
                self._process = None
                if "Address already in use" in self.error_log():
                    return False
                raise ServiceError(f"nginx exited at start. Log:\n{self.error_log()[-2000:]}")
            if fetch("127.0.0.1", self.port, timeout=1).status is not None:  # any answer will do
                self.started_in = time.monotonic() - begun
                return True
            time.sleep(0.005)
        self.stop()
        raise ServiceError(f"nginx did not answer within {timeout:g}s. Log:\n{self.error_log()}")

    def stop(self) -> None:
        """Stop the pollers, then nginx and its workers (a fast shutdown). Idempotent."""
        for poller in self._pollers:
            poller.stop()
        if self._process is None:
            return
        self._process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):  # a master that hung, workers it left
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait(timeout=5)
        self._process = None

    def remove(self) -> None:
        """Stop and delete the proxy's home."""
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)

    def run(self, script: str, *args: str, timeout: float = 60) -> Done:
        """Run `<home>/bin/<script>` as the host account (a non-zero exit is a result)."""
        return self.as_host_user([str(self.home / "bin" / script), *args], timeout=timeout)

    def switch(self, color: str) -> Done:
        """`bin/switch.sh <color>` as the host account."""
        return self.run("switch.sh", color)

    def active(self) -> str:
        """The color `bin/active.sh` reports; raises when it cannot tell."""
        done = self.run("active.sh")
        if done.returncode != 0 or not done.stdout.startswith("active: "):
            raise RuntimeError(f"active.sh failed on {self.home}:\n{done.stdout}{done.stderr}")
        return done.stdout.removeprefix("active: ").strip()

    def as_host_user(self, argv: list[str], *, timeout: float = 60) -> Done:
        runuser = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", self.user.pw_name, "--"]
        return subprocess.run(
            [*runuser, *argv], capture_output=True, text=True, timeout=timeout, env=self.env
        )

    def poller(self, *, interval: float = 0.02) -> Poller:
        """A started poller of this proxy; `stop()` stops it too."""
        self._pollers.append(Poller(self.url, interval=interval))
        return self._pollers[-1].start()

    def error_log(self) -> str:
        """nginx's stderr (what it says before reading its configuration), then its error log."""
        logs = [self.home / "logs" / name for name in ("nginx.out", "error.log")]
        return "".join(log.read_text(errors="replace") for log in logs if log.exists())


@pytest.fixture
def proxy_factory(services: Services) -> Iterator[Callable[..., ProxyHost]]:
    """Starts a `ProxyHost` in front of two `MystHost`s: `make(blue, green, active="blue")`.
    Every proxy (and its pollers) is stopped and removed after the test."""
    proxies: list[ProxyHost] = []

    def make(blue: MystHost, green: MystHost, *, active: str = "blue") -> ProxyHost:
        proxies.append(ProxyHost(services, blue.console_port, green.console_port, active=active))
        return proxies[-1].start()

    yield make
    for proxy in proxies:
        proxy.remove()
