"""The Shell port over SSH with paramiko: one connection per host, one channel per command.

Host keys are checked only against the target's own known_hosts file and unknown keys are refused.
Each command is prefixed with a line that announces its process group on stderr (OpenSSH's sshd
starts every session in a new session, so the login shell leads its own group). When a command
runs past its timeout or the caller stops reading, that group is ended on the host through a
second channel: closing a channel without a pty does not stop the remote command. Files travel
over SFTP on the same connection (`adapters/ssh_files.py`).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import selectors
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

import paramiko

from adapters.ssh_files import SftpFiles
from bot.domain.errors import (
    AuthenticationFailed,
    ConnectionLost,
    HostKeyRejected,
    HostUnreachable,
    OperationalError,
    StepTimeout,
)
from bot.domain.inventory import SshTarget
from bot.domain.output import CommandResult, LineSink, OutputCollector, Stream
from bot.domain.ports import Progress

log = logging.getLogger(__name__)

_READ_BYTES = 32 * 1024
# Offered first, the other ciphers after them for servers without: an AEAD cipher needs no
# separate MAC, which paramiko computes and checks in Python on every packet (AES-GCM saves a
# tenth of the client's CPU a command, docs/benchmarks.md). Both are in OpenSSH's default list.
_AEAD = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
_ANNOUNCE_LIMIT = 64 * 1024  # give up looking for the group line after this much stderr

# Runs on the host to end a process group: TERM, wait up to the grace period, KILL, wait again.
# Zombies do not count as alive (orphans wait for init to reap them); /proc is read with shell
# builtins only, so ending a command does not depend on ps or awk being installed.
_END_GROUP = """\
g={group}
alive() {{
  kill -s 0 -- -$g 2>/dev/null || return 1
  for f in /proc/[0-9]*/stat; do
    read -r s 2>/dev/null <"$f" || continue
    s=${{s##*) }}; set -- $s
    [ "$3" = "$g" ] && [ "$1" != Z ] && return 0
  done
  return 1
}}
kill -s TERM -- -$g 2>/dev/null || exit 0
i=0
while alive; do
  i=$((i + 1))
  [ $i -eq {term_polls} ] && kill -s KILL -- -$g 2>/dev/null
  [ $i -gt {all_polls} ] && exit 1
  sleep 0.05
done
"""


class _Transport(paramiko.Transport):
    """paramiko's transport, preferring AES-GCM (below), with two changes, both measured
    (docs/benchmarks.md), both in private parts of paramiko, which is why its version is pinned
    and the contract suite runs against real sshd:

    - It answers every global request from the server at once (an SSH_MSG_IGNORE). After
      authentication sshd sends a `hostkeys-00@openssh.com` notice that wants no reply; with
      nothing to send, the client's ACK waits for the delayed-ACK timer and sshd's answer to the
      first channel open waits behind it: 40 ms lost on every connection.
    - It never starts a key re-exchange itself (sshd still does, by its `RekeyLimit`). paramiko
      asks for one every 2^29 bytes, and if a channel closes during it, its own thread blocks
      waiting for the exchange only it can finish: a step printing a gigabyte then ended as a
      dropped connection.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.packetizer.REKEY_BYTES = self.packetizer.REKEY_PACKETS = 2**62
        options = self.get_security_options()
        options.ciphers = (*_AEAD, *(name for name in options.ciphers if name not in _AEAD))

    def answers(self, timeout: float) -> bool:
        """Whether sshd answers a keepalive request within `timeout` (its reply, a refusal, is
        what shows the connection is alive)."""
        replied = threading.Event()
        self.completion_event = replied  # paramiko sets it on a reply (either kind) or on a drop
        if not self.is_active():  # dropped before the event was ours: nothing will set it
            return False
        request = paramiko.Message()
        request.add_byte(paramiko.common.cMSG_GLOBAL_REQUEST)
        request.add_string("keepalive@openssh.com")
        request.add_boolean(True)  # want a reply
        try:
            self._send_user_message(request)  # type: ignore[attr-defined]
        except (OSError, EOFError, paramiko.SSHException):
            return False
        return replied.wait(timeout) and self.is_active()

    def _parse_global_request(self, m: paramiko.Message) -> None:
        super()._parse_global_request(m)  # type: ignore[misc]
        answer = paramiko.Message()
        answer.add_byte(paramiko.common.cMSG_IGNORE)
        answer.add_string(b"")
        self._send_message(answer)  # type: ignore[attr-defined]


class _RejectUnknownHost(paramiko.MissingHostKeyPolicy):
    """Refuse any host whose key is not in the known_hosts file; keep the key for the message."""

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        raise _UnknownHostKey(hostname, key)


class _UnknownHostKey(Exception):
    def __init__(self, hostname: str, key: paramiko.PKey) -> None:
        super().__init__(hostname)
        self.hostname = hostname
        self.key = key


class ParamikoConnector:
    """Opens SSH connections: key authentication only, host keys only from `target.known_hosts`."""

    def __init__(self, *, keepalive: float = 15.0, kill_grace: float = 2.0) -> None:
        self._keepalive = keepalive
        self._kill_grace = kill_grace

    def connect(self, target: SshTarget) -> ParamikoShell:
        where = str(target)
        key = _load_key(target)
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(_RejectUnknownHost())
        _load_known_hosts(client, target)  # and never the system's files
        sock = _open_socket(target)
        timeout = target.connect_timeout  # bounds the TCP connect, the banner, key exchange, auth
        try:
            client.connect(
                target.host,
                port=target.port,
                username=target.user,
                pkey=key,
                sock=sock,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
                channel_timeout=timeout,
                allow_agent=False,
                look_for_keys=False,
                transport_factory=_Transport,
            )
        except (_UnknownHostKey, paramiko.SSHException, OSError, EOFError) as exc:
            # paramiko reports a connection lost during authentication as a refusal
            transport = client.get_transport()
            dropped = transport is not None and not transport.is_active()
            client.close()
            sock.close()
            raise _connect_error(exc, target, dropped=dropped) from exc
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(int(self._keepalive))
        return ParamikoShell(client, host=where, kill_grace=self._kill_grace)

    def close(self) -> None:
        """Nothing to close: each connection is closed by its shell."""


def _connect_error(exc: Exception, target: SshTarget, *, dropped: bool) -> OperationalError:
    """The domain error for a failed handshake, saying what the operator should do; `dropped`:
    the connection was gone when it failed."""
    where, known_hosts = str(target), target.known_hosts
    if isinstance(exc, _UnknownHostKey):
        entry = f"{exc.hostname} {exc.key.get_name()} {exc.key.get_base64()}"
        return HostKeyRejected(
            f"{where} offered a host key that is not in {known_hosts}: {exc.key.get_name()} "
            f"{exc.key.fingerprint}. Check that fingerprint with the host's administrator "
            f"(`ssh-keygen -lf` on the host key), then add this line to {known_hosts}: {entry}",
            host=where,
        )
    if isinstance(exc, paramiko.BadHostKeyException):
        return HostKeyRejected(
            f"The host key of {where} has changed: {known_hosts} lists "
            f"{exc.expected_key.get_name()} {exc.expected_key.fingerprint}, the host offered "
            f"{exc.key.get_name()} {exc.key.fingerprint}. The host may have been reinstalled, "
            "or someone may be intercepting the connection. Do not proceed until its "
            f"administrator confirms the new key; then replace its entry in {known_hosts}.",
            host=where,
        )
    if isinstance(exc, paramiko.AuthenticationException) and dropped:
        return HostUnreachable(
            f"The connection to {where} dropped while authenticating, so the SSH handshake "
            "failed: the host closed it or went away. Check that the host is up and that its "
            "sshd accepts new connections, then try again.",
            host=where,
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return AuthenticationFailed(
            f"{where} refused the key {target.key_file} for user {target.user}. Check that its "
            f"public half is in ~{target.user}/.ssh/authorized_keys on the host.",
            host=where,
        )
    return HostUnreachable(
        f"{where} accepted the connection but the SSH handshake failed "
        f"({exc or 'timed out'}; limit {target.connect_timeout:g}s). Check that an SSH server "
        f"answers on port {target.port}.",
        host=where,
    )


def _load_key(target: SshTarget) -> paramiko.PKey:
    try:
        return paramiko.PKey.from_path(target.key_file)
    except paramiko.PasswordRequiredException as exc:
        raise AuthenticationFailed(
            f"The key {target.key_file} for {target} is encrypted. The bot needs a key without "
            "a passphrase: protect it with file permissions instead.",
            host=str(target),
        ) from exc
    except (OSError, ValueError, paramiko.SSHException) as exc:
        raise AuthenticationFailed(
            f"Cannot read the key {target.key_file} for {target}: {exc}. Check the path, "
            "that it is a private key, and that the bot may read it.",
            host=str(target),
        ) from exc


def _load_known_hosts(client: paramiko.SSHClient, target: SshTarget) -> None:
    try:
        client.load_host_keys(str(target.known_hosts))
    except OSError as exc:
        raise HostKeyRejected(
            f"Cannot read {target.known_hosts} ({exc.strerror}): it is the only place the bot "
            f"takes the host key of {target} from. Create it with that key, checked with the "
            "host's administrator.",
            host=str(target),
        ) from exc
    except paramiko.hostkeys.InvalidHostKey as exc:
        raise HostKeyRejected(
            f"{target.known_hosts} has a line that is not a valid key ({exc.line[:60]}...). "
            "Fix or remove that line.",
            host=str(target),
        ) from exc


def _open_socket(target: SshTarget) -> socket.socket:
    where, timeout = str(target), target.connect_timeout
    try:
        sock = socket.create_connection((target.host, target.port), timeout=timeout)
    except TimeoutError as exc:
        raise HostUnreachable(
            f"{where} did not answer within {timeout:g}s. Check that the host is up and that "
            f"port {target.port} is open to the bot.",
            host=where,
        ) from exc
    except socket.gaierror as exc:
        raise HostUnreachable(
            f"The name {target.host} of {where} does not resolve ({exc.strerror}). "
            "Check the host name in the config.",
            host=where,
        ) from exc
    except OSError as exc:
        raise HostUnreachable(
            f"Cannot connect to {where}: {exc.strerror or exc}. Check that sshd runs on "
            f"port {target.port} and that nothing blocks it.",
            host=where,
        ) from exc
    # Without this, Nagle and delayed ACKs cost about 40 ms on every command.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    return sock


class _GroupAnnouncement:
    """Takes the wrapper's `<marker> <pgid>` line out of stderr and remembers the group id.

    Bytes before the marker (a login script writing to stderr) are passed on, not lost.
    """

    def __init__(self, marker: bytes) -> None:
        self._marker = marker
        self._pending = b""
        self.group: int | None = None
        self.settled = False

    def feed(self, chunk: bytes) -> bytes:
        if self.settled:
            return chunk
        self._pending += chunk
        at = self._pending.find(self._marker)
        end = self._pending.find(b"\n", at) if at >= 0 else -1
        if end >= 0:
            value = self._pending[at + len(self._marker) : end].strip()
            # never 0 or 1: `kill -- -1` would signal every process the login user owns
            self.group = int(value) if value.isdigit() and int(value) > 1 else None
            rest = self._pending[:at] + self._pending[end + 1 :]
        elif len(self._pending) > _ANNOUNCE_LIMIT:
            rest = self._pending  # no announcement: the command cannot be ended by group
        else:
            return b""
        self.settled, self._pending = True, b""
        return rest

    def flush(self) -> bytes:
        rest, self._pending, self.settled = self._pending, b"", True
        return rest


class ParamikoShell:
    """Runs commands on one host over one open SSH connection, one channel per command, and
    moves files over an SFTP session on the same connection, opened on first use."""

    def __init__(self, client: paramiko.SSHClient, *, host: str, kill_grace: float = 2.0) -> None:
        self.host = host
        self._client = client
        self._kill_grace = kill_grace
        self._closed = False
        self._files = SftpFiles(self._transport, host=host)

    def run(
        self, command: str, *, timeout: float, on_line: LineSink | None = None
    ) -> CommandResult:
        started_at, start = datetime.now(UTC), time.monotonic()
        deadline = start + timeout
        collector = OutputCollector(on_line)
        marker = f"upgradebot-group-{secrets.token_hex(8)}"
        announcement = _GroupAnnouncement(marker.encode())

        def result(exit_code: int | None, *, stopped: bool = False) -> CommandResult:
            collector.feed(Stream.STDERR, announcement.flush())
            out, err = collector.finish()
            return CommandResult(
                host=self.host,
                command=command,
                exit_code=exit_code,
                stdout=out,
                stderr=err,
                started_at=started_at,
                duration=time.monotonic() - start,
                stopped_early=stopped,
            )

        transport = self._transport()
        try:
            channel = transport.open_session(timeout=max(deadline - time.monotonic(), 1.0))
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._lost(result(None), exc) from exc
        try:
            # No input: a command reading stdin sees its end at once (from /dev/null, which
            # costs no packet where closing the channel's input would).
            announce = f"printf '%s %s\\n' {marker} \"$$\" >&2"
            channel.exec_command(f"{announce}; exec </dev/null; {command}")
            ended = _pump(channel, collector, announcement, deadline)
            code: int | None = None
            if ended == "finished":
                ended, code = _exit_status(channel, transport, deadline)
            if ended in ("stopped", "timeout"):
                if not announcement.settled:  # the group line may trail the first stdout
                    _pump(channel, collector, announcement, time.monotonic() + 2.0, announced=True)
                self._end_group(transport, announcement.group)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._lost(result(None), exc) from exc
        except BaseException:
            # a failing sink must not leave the command running on the host
            with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                self._end_group(transport, announcement.group)
            raise
        finally:
            channel.close()
        if ended == "lost":
            raise self._lost(result(None), None)
        if ended == "timeout":
            raise StepTimeout(
                f"The command on {self.host} ran past its {timeout:g}s timeout and was stopped.",
                host=self.host,
                result=result(None),
            )
        return result(code, stopped=ended == "stopped")

    def read_file(self, path: str, *, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        return self._files.read(path, chunk_size=chunk_size)

    def write_file(
        self, path: str, chunks: Iterable[bytes], *, progress: Progress | None = None
    ) -> int:
        return self._files.write(path, chunks, progress=progress)

    def close(self) -> None:
        self._closed = True
        self._files.close()
        self._client.close()

    def is_open(self) -> bool:
        """Whether the connection is up as far as this side knows (no round trip)."""
        transport = self._client.get_transport()
        return not self._closed and transport is not None and transport.is_active()

    def answers(self, *, timeout: float) -> bool:
        """Whether the connection is up and sshd answers on it within `timeout`."""
        transport = self._client.get_transport()
        return self.is_open() and isinstance(transport, _Transport) and transport.answers(timeout)

    def _transport(self) -> paramiko.Transport:
        transport = self._client.get_transport()
        if self._closed:
            raise ConnectionLost(
                f"The connection to {self.host} is closed: connect again.", host=self.host
            )
        if transport is None or not transport.is_active():
            raise ConnectionLost(
                f"The connection to {self.host} dropped before this was started on it, so it "
                "did not run.",
                host=self.host,
            )
        return transport

    def _lost(self, partial: CommandResult, exc: BaseException | None) -> ConnectionLost:
        why = f" ({exc})" if exc and str(exc) else ""
        return ConnectionLost(
            f"The connection to {self.host} dropped while a command ran{why}. Whether it "
            "finished is unknown: check on the host before retrying.",
            host=self.host,
            result=partial,
        )

    def _end_group(self, transport: paramiko.Transport, group: int | None) -> None:
        """End the command's process group on the host and wait until it is gone."""
        if group is None:
            log.warning("A command on %s did not announce its process group: not ended", self.host)
            return
        polls = max(1, round(self._kill_grace / 0.05))
        script = _END_GROUP.format(group=group, term_polls=polls, all_polls=polls + 100)
        channel = transport.open_session(timeout=10.0)
        try:
            channel.exec_command(script)
            if not channel.status_event.wait(self._kill_grace + 10.0) or channel.exit_status:
                log.warning("Could not confirm that process group %s on %s ended", group, self.host)
        finally:
            channel.close()


def _read_ready(
    channel: paramiko.Channel, collector: OutputCollector, announcement: _GroupAnnouncement
) -> bool:
    """Take what has arrived (one read per stream, so a flood cannot starve the deadline check);
    True once the sink asks to stop."""
    stop = False
    if channel.recv_stderr_ready():
        chunk = announcement.feed(channel.recv_stderr(_READ_BYTES))
        stop = collector.feed(Stream.STDERR, chunk)
    if channel.recv_ready():
        stop = collector.feed(Stream.STDOUT, channel.recv(_READ_BYTES)) or stop
    return stop


def _pump(
    channel: paramiko.Channel,
    collector: OutputCollector,
    announcement: _GroupAnnouncement,
    deadline: float,
    *,
    announced: bool = False,
) -> str:
    """Read until the output ends ("finished"), the sink asks to stop ("stopped") or the deadline
    passes ("timeout"). With `announced`, read only until the group line has been seen."""
    with selectors.DefaultSelector() as selector:
        selector.register(channel, selectors.EVENT_READ)
        while True:
            # EOF comes after all data: once seen, what is buffered is all there will be
            done = channel.eof_received or channel.closed
            while True:
                if _read_ready(channel, collector, announcement) and not announced:
                    return "stopped"
                if not (done and (channel.recv_ready() or channel.recv_stderr_ready())):
                    break
            if done or (announced and announcement.settled):
                return "finished"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout"
            selector.select(remaining)


def _exit_status(
    channel: paramiko.Channel, transport: paramiko.Transport, deadline: float
) -> tuple[str, int | None]:
    if not channel.status_event.wait(max(0.0, deadline - time.monotonic())):
        return "timeout", None  # it closed its output but still runs
    if channel.exit_status >= 0:
        return "finished", channel.exit_status
    # Closed without a status: either the connection died (paramiko closes the channels just
    # before it marks the transport inactive) or the shell was killed by a signal.
    until = time.monotonic() + 0.2
    while transport.is_active() and time.monotonic() < until:
        time.sleep(0.01)
    return ("lost", None) if not transport.is_active() else ("finished", None)
