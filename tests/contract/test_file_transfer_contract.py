"""The file half of the Shell port's contract (`read_file`, `write_file`), run against the memory
twin, the local shell and SSH (a real sshd offering SFTP); then the twin's own controls, and the
SSH adapter's own cases: a dropped connection, a full disk, a host without SFTP, throughput and
streaming from one host to another.

The SSH cases use the hostkit's servers (`tests/hostkit/sshd.py`), which offer SFTP.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

import tests.hostkit.sshd as sshd
from adapters.local import LocalShell
from adapters.memory.shell import MemoryShell
from adapters.ssh import ParamikoConnector
from bot.domain.errors import ConnectionLost, FileTransferFailed, OperationalError
from bot.domain.ports import Shell
from tests.hostkit.sshd import SshServer

MB = 1024 * 1024


@pytest.fixture(scope="module")
def workspace() -> Iterator[Path]:
    # readable by the SSH login user, unlike pytest's private tmp_path
    root = Path(tempfile.mkdtemp(prefix="upgradebot-files-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root)


class FileKit:
    """A shell under test, a folder it may write in, and a direct look at that folder (the SSH
    server runs on this machine, so the host's files are ours to read)."""

    def __init__(self, kind: str, shell: Shell, host: str, folder: str) -> None:
        self.kind = kind
        self.shell = shell
        self.host = host
        self.folder = folder

    @property
    def twin(self) -> MemoryShell | None:
        return self.shell if isinstance(self.shell, MemoryShell) else None

    def path(self, name: str) -> str:
        return f"{self.folder}/{name}"

    def put(self, name: str, data: bytes) -> str:
        path = self.path(name)
        if self.twin:
            self.twin.files[path] = data
        else:
            Path(path).write_bytes(data)  # root's, 0644: the SSH login user may read it
        return path

    def get(self, path: str) -> bytes | None:
        """The file as a new reader on the host would see it now; None if there is none."""
        if self.twin:
            return self.twin.files.get(path)
        return Path(path).read_bytes() if Path(path).exists() else None

    def names(self) -> set[str]:
        if self.twin:
            inside = self.folder + "/"
            return {p[len(inside) :].split("/")[0] for p in self.twin.files if p.startswith(inside)}
        return {entry.name for entry in Path(self.folder).iterdir()}

    def mode(self, path: str) -> int:
        return Path(path).stat().st_mode & 0o777

    def protected_folder(self, name: str) -> str:
        """A folder the login user cannot create files in (root's, 0755)."""
        path = self.path(name)
        if self.twin:
            self.twin.mkdir(path)
            self.twin.deny(path)
        else:
            Path(path).mkdir(mode=0o755)
        return path

    def protected_file(self, name: str, data: bytes) -> str:
        """A file the login user cannot read (root's, 0600)."""
        path = self.put(name, data)
        if self.twin:
            self.twin.deny(path)
        else:
            Path(path).chmod(0o600)
        return path


@pytest.fixture(
    params=["memory", "local", pytest.param("ssh", marks=pytest.mark.services)],
)
def kit(request: pytest.FixtureRequest, workspace: Path) -> Iterator[FileKit]:
    folder = workspace / request.node.name.replace("/", "_")
    folder.mkdir()
    folder.chmod(0o777)  # the SSH login user writes here
    shell: Shell
    if request.param == "memory":
        twin = MemoryShell("memory-host")
        twin.mkdir(str(folder))
        shell, host = twin, "memory-host"
    elif request.param == "local":
        shell, host = LocalShell(), "localhost"
    else:
        server: SshServer = request.getfixturevalue("ssh_server_module")
        shell, host = ParamikoConnector().connect(server.target()), str(server.target())
    yield FileKit(request.param, shell, host, str(folder))
    shell.close()


def binary(size: int, seed: int = 0) -> bytes:
    """Every byte value, in no order: what an image or a dump looks like."""
    return random.Random(seed).randbytes(size)


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def assert_explains(error: OperationalError, kit: FileKit, path: str, problem: str) -> None:
    assert error.host == kit.host
    assert kit.host in str(error)
    assert path in str(error)
    assert problem in str(error)


SIZES = {"empty": 0, "one-byte": 1, "odd": 100_003, "few-MB": 3 * MB + 17}


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_binary_data_makes_the_round_trip(kit: FileKit, size: int) -> None:
    data = binary(size)
    path = kit.path("image.bin")
    assert kit.shell.write_file(path, pieces(data, 64 * 1024 + 3)) == size
    assert kit.get(path) == data  # what the host holds, not only what the shell reads back
    assert b"".join(kit.shell.read_file(path)) == data
    assert kit.names() == {"image.bin"}
    if not kit.twin:  # 0666 less the login's umask, like any file it creates (0644 for 022)
        umask = int(kit.shell.run("umask", timeout=10).stdout.text, 8)
        assert kit.mode(path) == 0o666 & ~umask


@pytest.mark.parametrize(("size", "chunk_size"), [(1000, 7), (MB + 3, 1000), (MB + 3, 64 * 1024)])
def test_chunks_are_never_larger_than_asked(kit: FileKit, size: int, chunk_size: int) -> None:
    data = binary(size)
    path = kit.put("data.bin", data)
    chunks = list(kit.shell.read_file(path, chunk_size=chunk_size))
    assert all(0 < len(chunk) <= chunk_size for chunk in chunks)
    assert b"".join(chunks) == data


def test_an_empty_file_reads_as_no_chunks(kit: FileKit) -> None:
    assert list(kit.shell.read_file(kit.put("empty", b""))) == []


def test_progress_counts_each_chunk_up_to_the_total(kit: FileKit) -> None:
    data = binary(1_500_000)
    seen: list[int] = []
    chunks = [b"", *pieces(data, 100_000), b""]  # empty chunks move nothing and report nothing
    assert kit.shell.write_file(kit.path("a.bin"), chunks, progress=seen.append) == len(data)
    assert seen == [100_000 * i for i in range(1, 16)]
    nothing: list[int] = []
    assert kit.shell.write_file(kit.path("b.bin"), [], progress=nothing.append) == 0
    assert nothing == []


def test_a_failed_write_leaves_nothing_behind(kit: FileKit) -> None:
    data, path = binary(2 * MB), kit.path("backup.tar")
    midway: list[tuple[bytes | None, set[str]]] = []

    def breaking_source() -> Iterator[bytes]:
        for i, chunk in enumerate(pieces(data, 256 * 1024)):
            if i == 3:
                midway.append((kit.get(path), kit.names()))
                raise RuntimeError("the source broke")
            yield chunk

    with pytest.raises(RuntimeError, match="the source broke"):  # the caller's error, as it was
        kit.shell.write_file(path, breaking_source())
    target, names = midway[0]
    assert target is None  # no reader could see a partial file under the real name
    assert len(names) == 1
    assert names.pop().startswith(".backup.tar.part-")
    assert kit.names() == set()  # and the temporary file is gone


def test_an_existing_file_is_replaced_atomically(kit: FileKit) -> None:
    old, new = binary(10 * MB, seed=1), binary(2 * MB, seed=2)
    path = kit.put("current.img", old)
    early_reader = kit.shell.read_file(path, chunk_size=MB)
    first = next(early_reader)
    midway: list[bytes | None] = []

    def source() -> Iterator[bytes]:
        for i, chunk in enumerate(pieces(new, 256 * 1024)):
            if i == 4:
                midway.append(kit.get(path))
            yield chunk

    assert kit.shell.write_file(path, source()) == len(new)
    assert midway == [old]  # until the rename, a new reader gets the old file, whole
    assert kit.get(path) == new
    assert kit.names() == {"current.img"}
    # A reader that had begun gets the old file whole, or (over SSH, which reads a window at a
    # time through a handle of its own) fails: never a mix of the two.
    try:
        rest = b"".join(early_reader)
    except FileTransferFailed as error:
        assert kit.kind == "ssh"
        assert_explains(error, kit, path, "changed while being read")
    else:
        assert first + rest == old


def test_copying_a_file_on_the_same_host(kit: FileKit) -> None:
    data = binary(3 * MB)
    source = kit.put("a.bin", data)
    copy = kit.path("b.bin")
    assert kit.shell.write_file(copy, kit.shell.read_file(source, chunk_size=100_000)) == len(data)
    assert kit.get(copy) == data


def test_reading_a_missing_file_fails(kit: FileKit) -> None:
    path = kit.path("nope.bin")
    with pytest.raises(FileTransferFailed) as caught:
        list(kit.shell.read_file(path))
    assert_explains(caught.value, kit, path, "does not exist")


def test_a_failed_read_fails_the_write_it_feeds(kit: FileKit) -> None:
    missing = kit.path("missing.bin")
    with pytest.raises(FileTransferFailed) as caught:
        kit.shell.write_file(kit.path("copy.bin"), kit.shell.read_file(missing))
    assert_explains(caught.value, kit, missing, "does not exist")
    assert kit.names() == set()


def test_writing_into_a_missing_folder_fails(kit: FileKit) -> None:
    path = kit.path("no-such-folder/image.bin")
    with pytest.raises(FileTransferFailed) as caught:
        kit.shell.write_file(path, [b"data"])
    assert_explains(caught.value, kit, path, "does not exist")
    assert kit.names() == set()


# Not the local shell: the tests run as root, whom permissions never stop (no EACCES to get);
# the SSH login user is unprivileged, and the twin is told what to refuse.
AS_UNPRIVILEGED = ["memory", pytest.param("ssh", marks=pytest.mark.services)]


@pytest.mark.parametrize("kit", AS_UNPRIVILEGED, indirect=True)
def test_writing_without_permission_fails(kit: FileKit) -> None:
    folder = kit.protected_folder("root-only")
    path = f"{folder}/image.bin"
    with pytest.raises(FileTransferFailed) as caught:
        kit.shell.write_file(path, [b"data"])
    assert_explains(caught.value, kit, path, "permission denied")
    assert kit.get(path) is None


@pytest.mark.parametrize("kit", AS_UNPRIVILEGED, indirect=True)
def test_reading_without_permission_fails(kit: FileKit) -> None:
    path = kit.protected_file("secret.key", b"s3cret")
    with pytest.raises(FileTransferFailed) as caught:
        list(kit.shell.read_file(path))
    assert_explains(caught.value, kit, path, "permission denied")


def test_a_closed_shell_refuses_transfers(kit: FileKit) -> None:
    path = kit.put("a.bin", b"data")
    kit.shell.close()
    with pytest.raises(ConnectionLost):
        list(kit.shell.read_file(path))
    with pytest.raises(ConnectionLost):
        kit.shell.write_file(kit.path("b.bin"), [b"data"])


# The twin's own controls, which the engine's unit tests rely on.


def test_the_twin_fails_a_write_halfway_once() -> None:
    shell = MemoryShell("h")
    shell.files["/b/dump.sql"] = b"old"
    shell.fail_transfer("/b/dump.sql", 250_000, FileTransferFailed("disk full", host="h"))
    seen: list[int] = []
    with pytest.raises(FileTransferFailed, match="disk full"):
        shell.write_file("/b/dump.sql", pieces(binary(MB), 100_000), progress=seen.append)
    assert seen == [100_000, 200_000]
    assert shell.files == {"/b/dump.sql": b"old"}
    assert shell.write_file("/b/dump.sql", [b"new"]) == 3  # only the next transfer fails
    assert shell.files == {"/b/dump.sql": b"new"}


def test_the_twin_keeps_the_temporary_file_when_the_connection_drops() -> None:
    shell = MemoryShell("h")
    shell.mkdir("/b")
    shell.fail_transfer("/b/x", 5, ConnectionLost("dropped", host="h"))
    with pytest.raises(ConnectionLost):
        shell.write_file("/b/x", [b"0123456789"])
    [(temp, partial)] = shell.files.items()
    assert temp.startswith("/b/.x.part-")
    assert partial == b"01234"


def test_the_twin_fails_a_read_halfway() -> None:
    shell = MemoryShell("h")
    shell.files["/b/x"] = bytes(range(100))
    shell.fail_transfer("/b/x", 25, ConnectionLost("dropped", host="h"))
    got: list[bytes] = []
    with pytest.raises(ConnectionLost):
        got.extend(shell.read_file("/b/x", chunk_size=10))
    assert got == [bytes(range(0, 10)), bytes(range(10, 20)), bytes(range(20, 25))]


def test_the_twin_knows_folders_from_files_and_mkdir() -> None:
    shell = MemoryShell("h")
    shell.files["/srv/app/config.yml"] = b"a: 1"
    shell.mkdir("/backups/")
    for folder in ("/srv", "/srv/app", "/backups", ""):
        shell.write_file(f"{folder}/new", [b"x"])
    with pytest.raises(FileTransferFailed, match="is a folder"):
        list(shell.read_file("/srv/app"))
    with pytest.raises(FileTransferFailed, match="does not exist"):
        shell.write_file("/srv/ap/new", [b"x"])


# The SSH adapter's own cases.


def connect(server: SshServer) -> Shell:
    return ParamikoConnector().connect(server.target())


def server_without_sftp() -> SshServer:
    """A hostkit sshd with its `Subsystem` line taken out, as on a host that disabled SFTP."""
    lines = sshd._CONFIG.splitlines(keepends=True)
    config = "".join(line for line in lines if not line.startswith("Subsystem "))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sshd, "_CONFIG", config)
        return SshServer().start()


@pytest.mark.services
def test_a_host_without_sftp_is_named_with_the_fix(workspace: Path) -> None:
    server = server_without_sftp()
    try:
        shell = connect(server)
        with pytest.raises(FileTransferFailed) as caught:
            shell.write_file(str(workspace / "x.bin"), [b"data"])
        assert "Subsystem sftp" in str(caught.value)
        assert shell.run("true", timeout=10).exit_code == 0  # the connection is still good
        shell.close()
    finally:
        server.remove()


@pytest.fixture
def host_folder(workspace: Path, request: pytest.FixtureRequest) -> Path:
    folder = workspace / f"{request.node.name}-{time.monotonic_ns()}"
    folder.mkdir()
    folder.chmod(0o777)
    return folder


@pytest.mark.services
def test_a_connection_dropped_during_a_write(ssh_server: SshServer, host_folder: Path) -> None:
    shell, target = connect(ssh_server), host_folder / "image.bin"

    def source() -> Iterator[bytes]:
        for i, chunk in enumerate(pieces(binary(16 * MB), 256 * 1024)):
            if i == 3:
                ssh_server.kill_sessions()
            yield chunk

    with pytest.raises(ConnectionLost) as caught:
        shell.write_file(str(target), source())
    assert str(target) in str(caught.value)
    assert not target.exists()
    with pytest.raises(ConnectionLost):
        shell.run("true", timeout=10)


@pytest.mark.services
def test_a_connection_dropped_during_a_read(ssh_server: SshServer, host_folder: Path) -> None:
    shell, path = connect(ssh_server), host_folder / "image.bin"
    path.write_bytes(binary(40 * MB))
    reader = shell.read_file(str(path), chunk_size=MB)
    next(reader)
    ssh_server.kill_sessions()
    with pytest.raises(ConnectionLost) as caught:
        for _ in reader:
            pass
    assert str(path) in str(caught.value)


# A real full disk needs a small file system of its own: tmpfs, which root may mount.
@pytest.mark.parametrize(
    "kit", ["local", pytest.param("ssh", marks=pytest.mark.services)], indirect=True
)
@pytest.mark.parametrize("size", [MB + 300_000, 4 * MB], ids=["just-over", "far-over"])
def test_a_full_disk_fails_the_write_and_keeps_the_old_file(kit: FileKit, size: int) -> None:
    # Just over is the case paramiko hides: the last pipelined writes' errors are dropped.
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0777", "tmpfs", kit.folder], check=True
    )
    try:
        path = kit.put("current.img", b"old")
        with pytest.raises(FileTransferFailed) as caught:
            kit.shell.write_file(path, pieces(binary(size), 256 * 1024))
        assert_explains(caught.value, kit, path, "space")
        assert kit.get(path) == b"old"
        assert kit.names() == {"current.img"}
    finally:
        subprocess.run(["umount", "-l", kit.folder], check=True)


def resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def hashed(chunks: Iterable[bytes], update: Callable[[bytes], object]) -> Iterator[bytes]:
    for chunk in chunks:
        update(chunk)
        yield chunk


@pytest.mark.services
def test_200_mb_over_sftp_with_bounded_memory(
    ssh_server_module: SshServer, host_folder: Path
) -> None:
    shell, path = connect(ssh_server_module), str(host_folder / "image.bin")
    block, size = binary(8 * MB), 200 * MB
    sent = hashlib.sha256()
    start = time.monotonic()
    shell.write_file(
        path, hashed((c for _ in range(25) for c in pieces(block, 256 * 1024)), sent.update)
    )
    write_rate = size / MB / (time.monotonic() - start)
    received, peak, base = hashlib.sha256(), 0, resident_bytes()
    start = time.monotonic()
    for chunk in shell.read_file(path):
        received.update(chunk)
        peak = max(peak, resident_bytes() - base)
    read_rate = size / MB / (time.monotonic() - start)
    print(
        f"\nSFTP over loopback, 200 MB: write {write_rate:.0f} MB/s, read {read_rate:.0f} MB/s, "
        f"read grew memory by {peak / MB:.1f} MB"
    )
    assert received.hexdigest() == sent.hexdigest()
    assert peak < 64 * MB  # a read-ahead window or two, never the file
    shell.close()


@pytest.fixture(scope="module")
def second_host() -> Iterator[SshServer]:
    with SshServer() as server:
        yield server


@pytest.mark.services
def test_streaming_a_backup_from_one_host_to_another(
    ssh_server_module: SshServer, second_host: SshServer, host_folder: Path
) -> None:
    (host_folder / "prod").mkdir()
    (host_folder / "staging").mkdir()
    (host_folder / "staging").chmod(0o777)  # the login user writes here
    backup = host_folder / "prod" / "backup.tar"
    backup.write_bytes(binary(50 * MB, seed=7))
    prod, staging = connect(ssh_server_module), connect(second_host)
    copy = host_folder / "staging" / "backup.tar"
    start = time.monotonic()
    copied = staging.write_file(str(copy), prod.read_file(str(backup)))
    rate = copied / MB / (time.monotonic() - start)
    print(f"\nhost to host over SFTP, 50 MB: {rate:.0f} MB/s")
    assert copied == 50 * MB
    assert (
        hashlib.sha256(copy.read_bytes()).digest() == hashlib.sha256(backup.read_bytes()).digest()
    )
    prod.close()
    staging.close()
