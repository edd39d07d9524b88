"""The file half of the SSH adapter: SFTP sessions on `ParamikoShell`'s own connection.

Reads keep a bounded read-ahead: paramiko's prefetch is asked for one window at a time, never for
the whole file, and each window is read through a handle of its own. Its prefetch can count itself
done while its thread still has requests to send; the reader then falls back to plain reads, and
the data of the requests sent after that stays in the handle's buffer, unread, until the handle is
closed (with `max_concurrent_requests` that is the rest of the file). A handle per window frees it
at every window. Writes are pipelined, with no round trip per 32 KB request; but paramiko drops
the status of the last pipelined writes when the file is closed, so the size the host stored is
checked before the temporary file is renamed into place: a full disk fails the transfer instead of
leaving a truncated file under the real name.

One session is kept for the shell's transfers. A transfer that starts while it is busy (a copy on
the same host, a second thread) opens a session of its own: paramiko matches responses to requests
per session, and interleaved pipelined writes would lose theirs.
"""

from __future__ import annotations

import contextlib
import errno
import posixpath
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator

# Split from adapters/ssh.py for size: it is the same adapter, so it may talk paramiko too.
import paramiko

from bot.domain.errors import ConnectionLost, FileTransferFailed, OperationalError
from bot.domain.ports import Progress

WINDOW = 8 * 1024 * 1024  # SSH window of an SFTP channel: one read-ahead in flight, no stall
READ_AHEAD = 8 * 1024 * 1024  # bytes requested before the reader asks for them
STALL_TIMEOUT = 120.0  # seconds a session may go without progress before it counts as lost
_OPEN_TIMEOUT = 10.0
_LIBRARY_ERRORS = (OSError, EOFError, paramiko.SSHException, paramiko.SFTPError)


class SftpFiles:
    """Reads and writes files on one host over SFTP, on an open SSH connection.

    `transport` returns the connection's transport, or raises `ConnectionLost` once it is closed.
    """

    def __init__(self, transport: Callable[[], paramiko.Transport], *, host: str) -> None:
        self.host = host
        self._transport = transport
        self._idle: paramiko.SFTPClient | None = None
        self._lock = threading.Lock()
        self._closed = False

    def read(self, path: str, *, chunk_size: int) -> Iterator[bytes]:
        """Yield the file in chunks of at most `chunk_size` bytes, holding at most one read-ahead
        window in memory. Errors surface on iteration: `FileTransferFailed`, `ConnectionLost`."""
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, not {chunk_size}")
        with self._session(path, writing=False) as sftp:
            try:
                yield from _download(sftp, path, chunk_size)
            except _LIBRARY_ERRORS as exc:
                raise self._failure(exc, sftp, path, writing=False) from exc

    def write(self, path: str, chunks: Iterable[bytes], *, progress: Progress | None) -> int:
        """Write `chunks` to a temporary file next to `path` and rename it into place; see
        `Shell.write_file`. Errors raised by `chunks` or `progress` pass through as they are."""
        folder, name = posixpath.split(path)
        if not name:
            raise FileTransferFailed(
                f"Cannot write {path} on {self.host}: the path names a folder. Name the file.",
                host=self.host,
            )
        temp = posixpath.join(folder, f".{name}.part-{secrets.token_hex(6)}")
        with self._session(path, writing=True) as sftp:

            @contextlib.contextmanager
            def translated() -> Iterator[None]:
                try:
                    yield
                except _LIBRARY_ERRORS as exc:
                    raise self._failure(exc, sftp, path, writing=True, temp=temp) from exc

            with translated():
                # new, never opened before: no one else's file; mode 0666 less the login's umask
                remote = sftp.open(temp, "wxb")
                remote.set_pipelined(True)
            written = 0
            try:
                for chunk in chunks:
                    if chunk:
                        with translated():
                            remote.write(chunk)
                        written += len(chunk)
                        if progress is not None:
                            progress(written)
                with translated():
                    remote.close()
                    stored = sftp.stat(temp).st_size
                if stored != written:
                    raise FileTransferFailed(
                        f"{self.host} stored only {stored} of the {written} bytes written to "
                        f"{path}, which is left as it was. Check free space on the host "
                        f"(`df -h {folder or '.'}`).",
                        host=self.host,
                    )
                with translated():
                    sftp.posix_rename(temp, path)  # replaces an existing file atomically
            except BaseException as exc:
                if not isinstance(exc, ConnectionLost):  # with the connection gone, we cannot
                    with contextlib.suppress(*_LIBRARY_ERRORS):
                        remote.close()  # its last buffered write may fail again (a full disk)
                    with contextlib.suppress(*_LIBRARY_ERRORS):
                        sftp.remove(temp)
                raise
        return written

    def close(self) -> None:
        """Close the idle session; those in use are closed when their transfer ends."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, None
        if idle is not None:
            _close(idle)

    @contextlib.contextmanager
    def _session(self, path: str, *, writing: bool) -> Iterator[paramiko.SFTPClient]:
        """Lend the kept session (or a new one if it is busy); keep it again afterwards unless
        the transfer lost it."""
        with self._lock:
            sftp, self._idle = self._idle, None
        if sftp is None or _channel_gone(sftp):
            if sftp is not None:
                _close(sftp)
            sftp = self._open(path, writing=writing)
        lost = False
        try:
            yield sftp
        except ConnectionLost:
            lost = True  # a stalled channel still looks open: never lend it again
            raise
        finally:
            with self._lock:
                keep = not (lost or self._closed or self._idle or _channel_gone(sftp))
                if keep:
                    self._idle = sftp
            if not keep:
                _close(sftp)

    def _open(self, path: str, *, writing: bool) -> paramiko.SFTPClient:
        transport = self._transport()
        channel = None
        try:
            channel = transport.open_session(window_size=WINDOW, timeout=_OPEN_TIMEOUT)
            # a host that stops answering must not hang a transfer (keepalives do not notice)
            channel.settimeout(STALL_TIMEOUT)
            channel.invoke_subsystem("sftp")
            return paramiko.SFTPClient(channel)
        except _LIBRARY_ERRORS as exc:
            if channel is not None:
                channel.close()
            if not transport.is_active():
                raise ConnectionLost(
                    f"The connection to {self.host} dropped ({exc}): connect again.",
                    host=self.host,
                ) from exc
            verb = "write" if writing else "read"
            raise FileTransferFailed(
                f"Cannot {verb} {path}: {self.host} refused an SFTP session ({exc}). Check that "
                "its sshd_config offers SFTP (a line like `Subsystem sftp internal-sftp`).",
                host=self.host,
            ) from exc

    def _failure(
        self,
        exc: BaseException,
        sftp: paramiko.SFTPClient,
        path: str,
        *,
        writing: bool,
        temp: str = "",
    ) -> OperationalError:
        if not _lost(exc, sftp):
            return FileTransferFailed(_explain(self.host, path, exc, writing), host=self.host)
        why = f" ({exc})" if str(exc) else f" ({type(exc).__name__})"
        if not writing:
            advice = "Read it again once the host answers."
        else:
            advice = (
                f"{path} is unchanged unless the drop came during the final rename, and the "
                f"temporary file {temp} may be left behind: check on the host before retrying."
            )
        return ConnectionLost(
            f"The connection to {self.host} dropped while {'writing' if writing else 'reading'} "
            f"{path}{why}. {advice}",
            host=self.host,
        )


class _Changed(OSError):
    """The file is not the one the read began with: it changed, or was replaced."""


def _download(sftp: paramiko.SFTPClient, path: str, chunk_size: int) -> Iterator[bytes]:
    """Read the file window by window, each through a handle of its own (see the module's
    docstring); every handle must show the file as the first one did."""
    done, first = 0, None
    while True:
        with sftp.open(path, "rb") as remote:
            attributes = remote.stat()
            seen = (attributes.st_size or 0, attributes.st_mtime)
            if first is None:
                if attributes.st_mode is not None and stat.S_ISDIR(attributes.st_mode):
                    raise IsADirectoryError(errno.EISDIR, "is a folder")
                first = seen
            elif seen != first:
                raise _Changed(f"changed while being read, after {done} bytes")
            size = first[0]
            if done >= size:
                # the check above, on a handle opened after the last byte came, also proves
                # the connection alive: paramiko takes a failed send for the end of a file
                return
            window = min(done + READ_AHEAD, size)
            remote.seek(done)
            remote.prefetch(window)
            while done < window:
                data = remote.read(min(chunk_size, window - done))
                if not data:
                    remote.stat()  # raises if the connection dropped
                    raise _Changed(f"ended while being read, after {done} of {size} bytes")
                done += len(data)
                yield data


def _close(sftp: paramiko.SFTPClient) -> None:
    """Close a session; on a dropped connection, saying goodbye fails too, and that is fine."""
    with contextlib.suppress(*_LIBRARY_ERRORS):
        sftp.close()


def _channel_gone(sftp: paramiko.SFTPClient) -> bool:
    """Whether the session's channel (or the whole connection) is closed."""
    channel = sftp.get_channel()
    return channel is None or channel.closed or not channel.get_transport().is_active()


def _lost(exc: BaseException, sftp: paramiko.SFTPClient) -> bool:
    """Whether `exc` means the connection (or the session) is gone, not that the host refused.

    The failing send or read can surface before paramiko's transport thread has marked the
    channel closed, so a doubtful error waits a moment for that.
    """
    if isinstance(exc, TimeoutError | EOFError | ConnectionError):
        return True  # never an SFTP status in what we ask for
    if getattr(exc, "errno", None) in (errno.ENOENT, errno.EACCES):
        return False  # a status reply: the session answered
    until = time.monotonic() + 0.3
    while not _channel_gone(sftp):
        if time.monotonic() > until:
            return False
        time.sleep(0.01)
    return True


def _explain(host: str, path: str, exc: BaseException, writing: bool) -> str:
    """What went wrong and what to check. paramiko maps SFTP status codes to errno values."""
    code = getattr(exc, "errno", None)
    folder = posixpath.dirname(path) or "."
    if code == errno.ENOENT and writing:
        return (
            f"Cannot write {path} on {host}: the folder {folder} does not exist. Check the "
            "path, or create the folder first."
        )
    if code == errno.ENOENT:
        return f"{path} does not exist on {host}. Check the path."
    if code == errno.EACCES and writing:
        return (
            f"{host} refused to write {path} (permission denied). Check that the login user "
            f"may create files in {folder} (`ls -ld {folder}`)."
        )
    if code == errno.EACCES:
        return (
            f"{host} refused to read {path} (permission denied). Check that the login user "
            f"may read it (`ls -l {path}`)."
        )
    if isinstance(exc, _Changed):
        return f"{path} on {host} {exc}. Read it again once nothing writes to it."
    if code == errno.EISDIR:
        return f"{path} on {host} is a folder, not a file. Check the path."
    if writing:
        return (
            f"Could not write {path} on {host} ({exc}). Check free space (`df -h {folder}`) "
            "and that the folder is writable."
        )
    return f"Could not read {path} on {host} ({exc}). Check that it is a readable file."
