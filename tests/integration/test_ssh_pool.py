"""Connections kept open between runs (`KeptConnections`), against a real sshd."""

from __future__ import annotations

import dataclasses
import signal
import time
from collections.abc import Callable, Iterator

import pytest

from adapters.ssh import ParamikoConnector
from adapters.ssh_pool import KeptConnections
from bot.domain.errors import ConnectionLost, HostKeyRejected
from bot.domain.inventory import SshTarget
from tests.hostkit.sshd import SshServer, kill

pytestmark = pytest.mark.services


@pytest.fixture
def pool() -> Iterator[KeptConnections]:
    kept = KeptConnections(ParamikoConnector())
    yield kept
    kept.close()


def client_port(pool: KeptConnections, target: SshTarget) -> str:
    """The client side of the connection a run gets: one TCP connection, one port."""
    shell = pool.connect(target)
    try:
        return shell.run("echo $SSH_CLIENT", timeout=10).stdout.text.split()[1]
    finally:
        shell.close()


def logins(server: SshServer) -> int:
    return server.log_text().count("Accepted publickey")


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_the_next_run_gets_the_connection_the_last_one_gave_back(
    ssh_server: SshServer, pool: KeptConnections
) -> None:
    target = ssh_server.target()
    ports = {client_port(pool, target) for _ in range(5)}
    assert len(ports) == 1
    assert logins(ssh_server) == 1
    assert pool.idle(target) == 1


def test_runs_at_the_same_time_never_share_a_connection(
    ssh_server: SshServer, pool: KeptConnections
) -> None:
    target = ssh_server.target()
    first, second = pool.connect(target), pool.connect(target)
    ports = {s.run("echo $SSH_CLIENT", timeout=10).stdout.text.split()[1] for s in (first, second)}
    assert len(ports) == 2
    first.close()
    second.close()
    assert pool.idle(target) == 2
    assert logins(ssh_server) == 2


def test_keep_open_zero_closes_the_connection_with_the_run(
    ssh_server: SshServer, pool: KeptConnections
) -> None:
    target = ssh_server.target(keep_open=0.0)
    assert client_port(pool, target) != client_port(pool, target)
    assert pool.idle(target) == 0
    assert wait_until(lambda: not ssh_server.session_pids())


def test_an_idle_connection_is_closed_once_it_waited_keep_open(
    ssh_server: SshServer, pool: KeptConnections
) -> None:
    target = ssh_server.target(keep_open=0.3)
    client_port(pool, target)
    assert pool.idle(target) == 1
    assert ssh_server.session_pids()
    assert wait_until(lambda: pool.idle(target) == 0)
    assert wait_until(lambda: not ssh_server.session_pids())  # sshd saw it close


def test_a_connection_past_its_max_age_is_not_kept(ssh_server: SshServer) -> None:
    pool = KeptConnections(ParamikoConnector(), max_age=0.2)
    try:
        target = ssh_server.target()
        shell = pool.connect(target)
        time.sleep(0.3)
        shell.close()
        assert pool.idle(target) == 0
        assert logins(ssh_server) == 1
        client_port(pool, target)
        assert logins(ssh_server) == 2  # and its host key was checked again
    finally:
        pool.close()


def test_a_kept_connection_that_dropped_is_replaced_before_the_run_uses_it(
    ssh_server: SshServer, pool: KeptConnections
) -> None:
    target = ssh_server.target()
    before = client_port(pool, target)
    assert ssh_server.kill_sessions()
    shell = pool.connect(target)  # no step ever sees the dead connection
    try:
        result = shell.run("echo $SSH_CLIENT", timeout=10)
    finally:
        shell.close()
    assert result.exit_code == 0
    assert result.stdout.text.split()[1] != before
    assert logins(ssh_server) == 2


def test_a_kept_connection_whose_host_stopped_answering_is_replaced_within_connect_timeout(
    ssh_server: SshServer, pool: KeptConnections
) -> None:
    target = ssh_server.target(connect_timeout=1.0)
    before = client_port(pool, target)
    frozen = ssh_server.session_pids()
    kill(frozen, signal.SIGSTOP)  # the connection stays up, but nothing answers on it
    try:
        started = time.monotonic()
        after = client_port(pool, target)
        waited = time.monotonic() - started
    finally:
        kill(frozen, signal.SIGKILL)
    assert after != before
    assert 1.0 <= waited < 5.0
    assert logins(ssh_server) == 2


def test_a_connection_that_dropped_during_a_run_is_not_kept(
    ssh_server: SshServer, pool: KeptConnections
) -> None:
    target = ssh_server.target()
    shell = pool.connect(target)

    def drop(_stream: object, _line: str) -> None:
        ssh_server.kill_sessions()

    with pytest.raises(ConnectionLost):
        shell.run("echo started; sleep 30", timeout=20, on_line=drop)
    shell.close()
    assert pool.idle(target) == 0


def test_a_changed_target_gets_its_own_connection(
    ssh_server: SshServer, pool: KeptConnections
) -> None:
    target = ssh_server.target()
    client_port(pool, target)
    other = dataclasses.replace(target, known_hosts=ssh_server.known_hosts_with_wrong_key())
    with pytest.raises(HostKeyRejected, match=r"host key of .* has changed"):
        pool.connect(other)  # the kept connection is not handed to a target it was not checked for
    assert pool.idle(target) == 1


def test_closing_the_pool_closes_the_idle_connections_and_those_given_back_later(
    ssh_server: SshServer, pool: KeptConnections
) -> None:
    target = ssh_server.target()
    in_use = pool.connect(target)
    client_port(pool, target)
    assert pool.idle(target) == 1
    pool.close()
    assert pool.idle(target) == 0
    in_use.close()
    assert pool.idle(target) == 0
    assert wait_until(lambda: not ssh_server.session_pids())


def test_a_connection_a_run_found_lost_is_not_kept_even_if_it_still_looks_up(
    ssh_server: SshServer, pool: KeptConnections
) -> None:
    target = ssh_server.target()
    shell = pool.connect(target)
    assert shell.run("true", timeout=10).exit_code == 0
    frozen = ssh_server.session_pids()
    kill(frozen, signal.SIGSTOP)  # the TCP connection stays up; no channel opens on it
    try:
        with pytest.raises(ConnectionLost):
            shell.run("true", timeout=1)
        shell.close()
    finally:
        kill(frozen, signal.SIGKILL)
    assert pool.idle(target) == 0
