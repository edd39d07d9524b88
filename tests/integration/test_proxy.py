"""The zero-downtime switch is real: nginx in front of two MyST Studio hosts, its upstream switched
and gracefully reloaded by the proxy host's script, run as the host account, while a poller GETs
the console through it every 20 ms. No request may fail, and once the switch has returned no
request may reach the old color (during the reload nginx lets old and new workers accept side by
side for about 100 ms, so the order of the answers inside that window is nginx's)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from adapters.ssh import ParamikoConnector
from tests.hostkit.sshd import SshServer, descendants

if TYPE_CHECKING:
    from tests.hostkit.myst import MystHost
    from tests.hostkit.proxy import Poller, ProxyHost

pytestmark = pytest.mark.services

POLL_EVERY = 0.02  # seconds
OLD, NEW = "3.9.0.3", "3.9.1"


@dataclass(frozen=True)
class BlueGreen:
    """Blue serving the old version, green the new one, the proxy on blue."""

    blue: MystHost
    green: MystHost
    proxy: ProxyHost


@pytest.fixture
def blue_green(
    myst_host_factory: Callable[..., MystHost], proxy_factory: Callable[..., ProxyHost]
) -> BlueGreen:
    blue, green = myst_host_factory(), myst_host_factory()
    blue.install(OLD)
    green.install(NEW)
    return BlueGreen(blue, green, proxy_factory(blue, green))


@pytest.fixture
def idle_proxy(
    myst_host_factory: Callable[..., MystHost], proxy_factory: Callable[..., ProxyHost]
) -> ProxyHost:
    """A proxy in front of two hosts that are not installed: nothing answers behind it."""
    return proxy_factory(myst_host_factory(), myst_host_factory())


def _traffic_line(color: str, host: MystHost) -> str:
    return f"Traffic now goes to {color} (127.0.0.1:{host.console_port})\n"


def _leftovers(proxy: ProxyHost) -> list[str]:
    """Files a switch must not leave behind: its temporary copies."""
    names = ("conf/upstream.conf.new", "conf/upstream.conf.previous")
    return [name for name in names if (proxy.home / name).exists()]


def _switch(proxy: ProxyHost, poller: Poller, color: str) -> tuple[float, float, str]:
    """Switch as the host account; (poller time before, poller time after, stdout)."""
    begun = poller.now()
    done = proxy.switch(color)
    assert (done.returncode, done.stderr) == (0, ""), done.stdout + done.stderr
    return begun, poller.now(), done.stdout


def _uid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("\nUid:")[1].split()[0])


def test_switching_to_green_under_load_drops_no_request(blue_green: BlueGreen) -> None:
    blue, green, proxy = blue_green.blue, blue_green.green, blue_green.proxy
    assert proxy.active() == "blue"
    poller = proxy.poller(interval=POLL_EVERY)
    poller.wait_for(25)

    begun, switched, output = _switch(proxy, poller, "green")
    assert output == _traffic_line("green", green)
    poller.wait_for(25)
    assert proxy.active() == "green"
    again = proxy.switch("green")  # a step run twice (after a lost connection) changes nothing
    assert (again.returncode, again.stdout) == (0, output)
    # Blue is not needed once the switch is through: stopping it fails no request.
    stopped = blue.run("stop.sh")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    poller.wait_for(25)
    report = poller.stop()

    assert report.failures == ()
    assert report.versions_seen[0] == OLD
    assert report.versions_seen[-1] == NEW
    assert report.versions(before=begun) == (OLD,)
    assert report.versions(after=switched) == (NEW,)
    assert report.requests >= 75
    assert _leftovers(proxy) == []
    access_log = (proxy.home / "logs/access.log").read_text()
    assert f"color=green upstream={proxy.backends['green']}" in access_log


def test_a_switch_to_an_instance_that_is_down_is_refused_and_traffic_stays(
    blue_green: BlueGreen,
) -> None:
    green, proxy = blue_green.green, blue_green.proxy
    assert green.run("stop.sh").returncode == 0
    upstream = (proxy.home / "conf/upstream.conf").read_text()
    poller = proxy.poller(interval=POLL_EVERY)
    poller.wait_for(10)

    refused = proxy.switch("green")

    poller.wait_for(10)
    report = poller.stop()
    assert (refused.returncode, refused.stdout) == (1, "")
    assert re.fullmatch(
        rf"switch\.sh: refusing to switch to green: its console at "
        rf"http://127\.0\.0\.1:{green.console_port}/ does not answer \(.*Failed to connect.*\); "
        r"traffic stays on blue\n",
        refused.stderr,
    ), refused.stderr
    assert (proxy.home / "conf/upstream.conf").read_text() == upstream
    assert proxy.active() == "blue"
    assert report.failures == ()
    assert report.versions_seen == (OLD,)
    assert _leftovers(proxy) == []


def test_the_bot_switches_and_rolls_back_over_ssh(
    blue_green: BlueGreen, ssh_server: SshServer
) -> None:
    """Over SSH the login's PATH has no /usr/sbin: the scripts must still find nginx."""
    blue, green, proxy = blue_green.blue, blue_green.green, blue_green.proxy
    shell = ParamikoConnector().connect(ssh_server.target())
    poller = proxy.poller(interval=POLL_EVERY)
    try:
        poller.wait_for(10)
        to_green = shell.run(f"{proxy.home}/bin/switch.sh green", timeout=30)
        on_green = poller.now()
        poller.wait_for(10)
        active = shell.run(f"{proxy.home}/bin/active.sh", timeout=30)
        back_begun = poller.now()
        back = shell.run(f"{proxy.home}/bin/switch.sh blue", timeout=30)
        on_blue = poller.now()
        poller.wait_for(10)
    finally:
        shell.close()
    report = poller.stop()

    assert to_green.ok, to_green.tail()
    assert to_green.stdout.text == _traffic_line("green", green)
    assert active.stdout.text == "active: green\n"
    assert back.ok, back.tail()
    assert back.stdout.text == _traffic_line("blue", blue)
    assert report.failures == ()
    assert report.versions(after=on_green, before=back_begun) == (NEW,)
    assert report.versions(after=on_blue) == (OLD,)
    assert report.versions_seen[0] == OLD
    assert NEW in report.versions_seen
    assert proxy.active() == "blue"


def test_a_configuration_nginx_rejects_is_put_back(blue_green: BlueGreen) -> None:
    proxy = blue_green.proxy
    template = proxy.home / "conf/upstream.template"
    upstream = (proxy.home / "conf/upstream.conf").read_text()
    template.write_text(template.read_text().replace("server @BACKEND@;", "server @BACKEND@ x=1;"))

    refused = proxy.switch("green")

    assert refused.returncode == 1
    assert refused.stderr.startswith(
        "switch.sh: nginx refused the configuration for green, so it was put back; "
        "traffic stays on blue: "
    ), refused.stderr
    assert 'invalid parameter "x=1"' in refused.stderr
    assert (proxy.home / "conf/upstream.conf").read_text() == upstream
    assert proxy.active() == "blue"
    assert _leftovers(proxy) == []


def test_the_proxy_is_its_own_nginx_run_by_the_host_account(idle_proxy: ProxyHost) -> None:
    proxy = idle_proxy
    master = int((proxy.home / "run/nginx.pid").read_text())
    processes = [master, *descendants(master)]
    assert len(processes) == 3  # the master and two workers
    assert {_uid(pid) for pid in processes} == {proxy.user.pw_uid}
    owners = {path.stat().st_uid for path in [proxy.home, *proxy.home.rglob("*")]}
    assert owners == {proxy.user.pw_uid}
    config = proxy.config.read_text()
    assert f"listen 127.0.0.1:{proxy.port};" in config
    assert "\nuser " not in config
    paths = re.findall(r"(?<=\s)/\w[^\s;]*", config)  # pid, logs, temp dirs, include, comment
    assert len(paths) >= 9
    assert all(Path(path).is_relative_to(proxy.home) for path in paths)


def test_active_says_when_the_proxy_cannot_tell(idle_proxy: ProxyHost) -> None:
    proxy = idle_proxy
    nothing_behind = proxy.run("active.sh")
    assert (nothing_behind.returncode, nothing_behind.stdout) == (0, "active: blue\n")
    assert nothing_behind.stderr == (
        f"active.sh: the proxy answers HTTP 502 for blue ({proxy.backends['blue']})\n"
    )

    proxy.stop()
    down = proxy.run("active.sh")
    assert (down.returncode, down.stdout) == (1, "")
    assert down.stderr.startswith(f"active.sh: the proxy at {proxy.url} does not answer (")
    assert down.stderr.endswith("); it is configured for blue\n")
    refused = proxy.switch("blue")
    assert refused.returncode == 1
    assert refused.stderr.startswith("switch.sh: nginx is not running (see ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["purple"], "usage: switch.sh <blue|green>; got 'purple'\n"),
        ([], "usage: switch.sh <blue|green>\n"),
        (["blue", "green"], "usage: switch.sh <blue|green>\n"),
    ],
)
def test_switch_usage(idle_proxy: ProxyHost, args: list[str], message: str) -> None:
    done = idle_proxy.run("switch.sh", *args)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", message)
    assert idle_proxy.active() == "blue"


def _hold_switch_lock(proxy: ProxyHost, seconds: float) -> subprocess.Popen[bytes]:
    """A process of the host account that holds the switch lock, as a running switch does."""
    lock = str(proxy.home / "run/switch.lock")
    holder = subprocess.Popen(
        ["runuser", "-u", proxy.user.pw_name, "--", "flock", lock, "sleep", str(seconds)],
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while proxy.as_host_user(["flock", "-n", lock, "true"]).returncode == 0:
        assert time.monotonic() < deadline, "the lock was never taken"
        time.sleep(0.01)
    return holder


def test_a_switch_waits_for_the_running_one_and_a_killed_one_blocks_nothing(
    blue_green: BlueGreen,
) -> None:
    proxy = blue_green.proxy
    holder = _hold_switch_lock(proxy, 1)
    begun = time.monotonic()
    waited = proxy.switch("green")
    assert (waited.returncode, waited.stderr) == (0, ""), waited.stdout + waited.stderr
    assert holder.wait(timeout=10) == 0
    assert time.monotonic() - begun >= 0.5  # it went only once the holder was done
    assert proxy.active() == "green"

    killed = _hold_switch_lock(proxy, 600)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=10)
    back = proxy.switch("blue")
    assert (back.returncode, back.stderr) == (0, ""), back.stdout + back.stderr
    assert proxy.active() == "blue"
