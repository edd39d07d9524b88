"""What only the real SSH adapter has: host keys, authentication, reaching the host, losing it."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.ssh import ParamikoConnector, ParamikoShell, _GroupAnnouncement
from bot.domain.errors import (
    AuthenticationFailed,
    ConnectionLost,
    HostKeyRejected,
    HostUnreachable,
)
from bot.domain.output import Stream
from tests.hostkit.services import free_port
from tests.hostkit.sshd import SSH_ROOT, SshServer, known_hosts_line, run_as_host_user

pytestmark = pytest.mark.services

connector = ParamikoConnector()


def fingerprint(public_key: str) -> str:
    blob = base64.b64decode(public_key.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


@pytest.fixture
def shell(ssh_server_module: SshServer) -> Iterator[ParamikoShell]:
    opened = connector.connect(ssh_server_module.target())
    yield opened
    opened.close()


def test_an_unknown_host_key_is_refused_with_its_fingerprint(
    ssh_server_module: SshServer, tmp_path: Path
) -> None:
    server = ssh_server_module
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("# nothing trusted yet\n")
    with pytest.raises(HostKeyRejected) as caught:
        connector.connect(server.target(known_hosts=known_hosts))
    message = str(caught.value)
    assert caught.value.host == f"upgradebot-host@127.0.0.1:{server.port}"
    assert caught.value.host in message
    assert fingerprint(server.host_public_key) in message
    assert str(known_hosts) in message
    # the line to add, once the fingerprint has been checked
    assert known_hosts_line(f"[127.0.0.1]:{server.port}", server.host_public_key) in message


def test_a_key_known_for_another_port_is_not_trusted(
    ssh_server_module: SshServer, tmp_path: Path
) -> None:
    server = ssh_server_module
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(known_hosts_line("127.0.0.1", server.host_public_key) + "\n")
    with pytest.raises(HostKeyRejected):
        connector.connect(server.target(known_hosts=known_hosts))


def test_a_changed_host_key_is_refused(ssh_server_module: SshServer) -> None:
    server = ssh_server_module
    wrong = server.known_hosts_with_wrong_key()
    with pytest.raises(HostKeyRejected) as caught:
        connector.connect(server.target(known_hosts=wrong))
    message = str(caught.value)
    assert "changed" in message
    assert fingerprint(server.host_public_key) in message
    assert fingerprint(wrong.read_text().split(maxsplit=1)[1]) in message
    assert caught.value.__cause__ is not None  # translated, with the library's error kept


def test_a_hashed_known_hosts_entry_is_trusted(
    ssh_server_module: SshServer, tmp_path: Path
) -> None:
    known_hosts = ssh_server_module.write_known_hosts(tmp_path / "known_hosts", hashed=True)
    assert known_hosts.read_text().startswith("|1|")
    opened = connector.connect(ssh_server_module.target(known_hosts=known_hosts))
    try:
        assert opened.run("echo trusted", timeout=10).stdout.text == "trusted\n"
    finally:
        opened.close()


def test_a_missing_known_hosts_file_is_refused(
    ssh_server_module: SshServer, tmp_path: Path
) -> None:
    with pytest.raises(HostKeyRejected, match="Cannot read"):
        connector.connect(ssh_server_module.target(known_hosts=tmp_path / "absent"))


def test_a_key_the_host_does_not_accept(ssh_server_module: SshServer) -> None:
    stranger = ssh_server_module.unauthorized_client_key()
    with pytest.raises(AuthenticationFailed) as caught:
        connector.connect(ssh_server_module.target(key_file=stranger))
    assert str(stranger) in str(caught.value)
    assert "upgradebot-host@127.0.0.1" in str(caught.value)


def test_a_connection_lost_during_authentication_is_not_called_a_refused_key() -> None:
    # sshd runs the command while it looks for the key; it kills sshd's process for the login
    directory = SSH_ROOT / f"drop-{secrets.token_hex(4)}"
    drop = directory / "drop-during-auth"
    config = f"AuthorizedKeysCommand {drop}\nAuthorizedKeysCommandUser root"
    with SshServer(directory=directory, config=config) as server:
        drop.write_text("#!/bin/sh\nkill -KILL $PPID\n")
        drop.chmod(0o755)
        stranger = server.unauthorized_client_key()  # not in the file: the command runs
        with pytest.raises(HostUnreachable, match="dropped while authenticating"):
            connector.connect(server.target(key_file=stranger))


def test_a_missing_key_file(ssh_server_module: SshServer, tmp_path: Path) -> None:
    with pytest.raises(AuthenticationFailed, match="Cannot read the key"):
        connector.connect(ssh_server_module.target(key_file=tmp_path / "no-key"))


def test_nothing_listening_is_unreachable_at_once(ssh_server_module: SshServer) -> None:
    port = free_port()
    start = time.monotonic()
    with pytest.raises(HostUnreachable) as caught:
        connector.connect(ssh_server_module.target(port=port, connect_timeout=5.0))
    assert time.monotonic() - start < 1.0
    assert f"127.0.0.1:{port}" in str(caught.value)


def test_a_connect_that_gets_no_answer_honours_connect_timeout(
    ssh_server_module: SshServer,
) -> None:
    # a listener whose accept queue is full drops further SYNs, like a filtered port
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(4)]
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        time.sleep(0.05)
        start = time.monotonic()
        with pytest.raises(HostUnreachable, match=r"did not answer within 0\.5s"):
            connector.connect(ssh_server_module.target(port=port, connect_timeout=0.5))
        elapsed = time.monotonic() - start
        for filler in fillers:
            filler.close()
    assert 0.5 <= elapsed < 2.0


def test_a_server_that_never_speaks_ssh_honours_connect_timeout(
    ssh_server_module: SshServer,
) -> None:
    accepted: list[socket.socket] = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]))
        thread.start()
        start = time.monotonic()
        with pytest.raises(HostUnreachable, match="handshake"):
            connector.connect(ssh_server_module.target(port=port, connect_timeout=0.5))
        elapsed = time.monotonic() - start
        thread.join(5)
    for sock in accepted:
        sock.close()
    assert 0.5 <= elapsed < 2.0


def test_commands_reuse_one_connection(ssh_server: SshServer) -> None:
    opened = connector.connect(ssh_server.target())
    try:
        clients = {opened.run("echo $SSH_CLIENT", timeout=10).stdout.text for _ in range(20)}
        assert len(clients) == 1  # same client port every time: one TCP connection
        assert len(ssh_server.session_pids()) == 2  # one connection: monitor + user process
    finally:
        opened.close()
    assert ssh_server.log_text().count("Accepted publickey") == 1


def test_the_socket_has_tcp_nodelay(shell: ParamikoShell) -> None:
    transport = shell._client.get_transport()
    assert transport is not None
    assert isinstance(transport.sock, socket.socket)
    assert transport.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_the_connection_is_encrypted_with_aes_gcm(shell: ParamikoShell) -> None:
    transport = shell._client.get_transport()
    assert transport is not None
    assert (transport.local_cipher, transport.remote_cipher) == ("aes128-gcm@openssh.com",) * 2


def test_a_host_without_aes_gcm_is_reached_with_a_cipher_it_has() -> None:
    with SshServer(config="Ciphers aes256-ctr") as server:
        opened = connector.connect(server.target())
        try:
            assert opened.run("echo reached", timeout=10).stdout.text == "reached\n"
            transport = opened._client.get_transport()
            assert transport is not None
            assert transport.remote_cipher == "aes256-ctr"
        finally:
            opened.close()


def test_a_dropped_connection_mid_step_is_connection_lost_with_the_partial_output(
    ssh_server: SshServer,
) -> None:
    opened = connector.connect(ssh_server.target())
    groups: list[int] = []

    def drop_after_first_line(stream: Stream, line: str) -> None:
        if stream is Stream.STDOUT:
            groups.append(int(line.split()[1]))
            assert ssh_server.kill_sessions()

    try:
        with pytest.raises(ConnectionLost) as caught:
            opened.run(
                'echo "group $$"; echo warming >&2; sleep 30',
                timeout=20,
                on_line=drop_after_first_line,
            )
        assert caught.value.result is not None
        assert caught.value.result.stdout.text == f"group {groups[0]}\n"
        assert caught.value.result.exit_code is None
        assert caught.value.result.duration < 10
        assert "upgradebot-host@127.0.0.1" in str(caught.value)
        with pytest.raises(
            ConnectionLost, match="dropped before this was started on it, so it did not run"
        ):
            opened.run("true", timeout=5)
    finally:
        opened.close()
        # the command outlives its dead session, as it would on a real host
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)


def test_a_shell_killed_by_a_signal_is_a_result_not_a_lost_connection(
    shell: ParamikoShell,
) -> None:
    result = shell.run("echo bye; kill -9 $$", timeout=10)
    assert result.stdout.text == "bye\n"
    assert result.exit_code is None
    assert not result.ok
    assert shell.run("echo still here", timeout=10).stdout.text == "still here\n"


def test_files_arranged_as_the_host_user_are_seen_over_ssh(shell: ParamikoShell) -> None:
    name = f"/tmp/upgradebot-arranged-{time.monotonic_ns()}"
    run_as_host_user(f"echo 3.9.1 > {name}")
    try:
        result = shell.run(f"cat {name}; id -un; ls -l {name}", timeout=10)
        version, user, listing = result.stdout.text.splitlines()
        assert (version, user) == ("3.9.1", "upgradebot-host")
        assert " upgradebot-host " in listing  # owned by the login user, not root
    finally:
        run_as_host_user(f"rm -f {name}")


def test_sshd_starts_each_command_in_a_session_and_group_of_its_own(shell: ParamikoShell) -> None:
    # what ending a command by its process group relies on (checked on OpenSSH 9.2)
    result = shell.run("echo $$; ps -o pgid= -o sid= -p $$", timeout=10)
    pid, pgid, sid = result.stdout.text.split()
    assert pid == pgid == sid


def test_the_group_line_is_taken_out_of_stderr_whatever_the_chunks() -> None:
    stream = b"login noise\nupgradebot-group-abc 4242\nreal error\n"
    for size in (1, 2, 5, 100):
        announcement = _GroupAnnouncement(b"upgradebot-group-abc")
        kept = b"".join(
            announcement.feed(stream[i : i + size]) for i in range(0, len(stream), size)
        )
        assert kept + announcement.flush() == b"login noise\nreal error\n"
        assert announcement.group == 4242


@pytest.mark.parametrize("value", [b"1", b"0", b"-5", b"x"])
def test_a_group_line_that_could_hit_other_processes_is_ignored(value: bytes) -> None:
    announcement = _GroupAnnouncement(b"upgradebot-group-abc")
    assert announcement.feed(b"upgradebot-group-abc " + value + b"\nerr\n") == b"err\n"
    assert announcement.group is None
