"""What a command printed, kept bounded: the first and the last bytes, never the whole stream.

Every shell adapter feeds its chunks to one `OutputCollector`, so line splitting, limits and the
early stop of a followed log behave the same over SSH, locally and in the twins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

HEAD_BYTES = 16 * 1024
TAIL_BYTES = 64 * 1024
MAX_LINE_BYTES = 16 * 1024  # longer lines are cut into pieces so one line cannot grow unbounded


class Stream(StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"


# Called with each complete line (without its newline). Returning True asks the adapter to stop the
# command and stop reading: used to end a followed log once the start-up has finished.
LineSink = Callable[[Stream, str], bool | None]


@dataclass(frozen=True, kw_only=True)
class Output:
    """A bounded copy of one stream: `head` and `tail` with the counts of everything seen.

    `omitted_bytes` is how many bytes between head and tail were not kept; it is counted on the raw
    bytes, because undecodable bytes make the text longer than the bytes it came from.
    """

    head: str = ""
    tail: str = ""
    total_bytes: int = 0
    total_lines: int = 0
    omitted_bytes: int = 0

    @property
    def truncated(self) -> bool:
        kept = len(self.head.encode()) + len(self.tail.encode())
        return self.omitted_bytes > 0 or self.total_bytes > kept

    @property
    def text(self) -> str:
        if not self.truncated:
            return self.head + self.tail
        omitted = self.omitted_bytes or (
            self.total_bytes - len(self.head.encode()) - len(self.tail.encode())
        )
        return f"{self.head}\n[... {omitted} bytes not kept ...]\n{self.tail}"

    def last_lines(self, n: int) -> list[str]:
        # Untruncated, head and tail are one text split at an arbitrary byte; truncated, the tail
        # starts at a line boundary and holds the end.
        kept = self.tail if self.truncated and self.tail else self.head + self.tail
        lines = kept.splitlines()
        return lines[-n:] if n > 0 else []


@dataclass(frozen=True, kw_only=True)
class CommandResult:
    """The outcome of one command or adapter call on one host."""

    host: str
    command: str
    exit_code: int | None
    stdout: Output
    stderr: Output
    started_at: datetime
    duration: float
    stopped_early: bool = False  # reading ended on purpose (a followed log reached its end mark)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 or (self.stopped_early and self.exit_code is None)

    def tail(self, n: int = 20) -> str:
        """The last `n` lines of stdout, then of stderr: what an operator reads first."""
        parts = self.stdout.last_lines(n) + self.stderr.last_lines(n)
        return "\n".join(parts[-n:])


def _cut_point(data: bytes) -> int:
    """Where `data` must end so it does not stop inside a UTF-8 character (`len(data)` if whole)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:  # a continuation byte: the character started further back
            continue
        if byte < 0x80 or byte >= 0xF8:  # ASCII, or a byte no character starts with
            return len(data)
        needed = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
        return len(data) - back if needed > back else len(data)
    return len(data)


def _skip_continuation(data: bytes) -> bytes:
    """Drop the end of a character cut off at the start of `data`."""
    start = 0
    while start < min(3, len(data)) and data[start] & 0xC0 == 0x80:
        start += 1
    return data[start:]


def _pieces(line: bytes) -> list[bytes]:
    """Cut a line into pieces of at most MAX_LINE_BYTES, never inside a character."""
    pieces = []
    while len(line) > MAX_LINE_BYTES:
        end = _cut_point(line[:MAX_LINE_BYTES]) or MAX_LINE_BYTES
        pieces.append(line[:end])
        line = line[end:]
    pieces.append(line)
    return pieces


class _StreamBuffer:
    def __init__(self, head_limit: int, tail_limit: int) -> None:
        self._head = bytearray()
        self._tail = bytearray()
        self._head_limit = head_limit
        self._tail_limit = tail_limit
        self.total_bytes = 0
        self._newlines = 0
        self._open_line = False  # the last byte seen was not a newline: one more line to count

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.total_bytes += len(chunk)
        self._newlines += chunk.count(b"\n")
        self._open_line = not chunk.endswith(b"\n")
        room = self._head_limit - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self._tail += chunk
            if len(self._tail) > 2 * self._tail_limit:
                # keep one byte before the tail: it says whether the tail starts a line
                del self._tail[: len(self._tail) - self._tail_limit - 1]

    def output(self) -> Output:
        head, tail = bytes(self._head), bytes(self._tail)
        if self.total_bytes > len(head):
            # the head is full: end it on a character, the rest of that character goes to the tail
            cut = _cut_point(head)
            head, tail = head[:cut], head[cut:] + tail
        if len(tail) > self._tail_limit:
            before = tail[len(tail) - self._tail_limit - 1]
            tail = tail[len(tail) - self._tail_limit :]
            newline = tail.find(b"\n")
            if before == ord("\n"):
                pass  # already starts a line
            elif 0 <= newline < len(tail) - 1:
                tail = tail[newline + 1 :]  # start the kept tail at a line boundary
            else:
                tail = _skip_continuation(tail)  # one long last line: keep its end
        return Output(
            head=head.decode(errors="replace"),
            tail=tail.decode(errors="replace"),
            total_bytes=self.total_bytes,
            total_lines=self._newlines + (1 if self._open_line else 0),
            omitted_bytes=self.total_bytes - len(head) - len(tail),
        )


class _LineSplitter:
    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[str]:
        *complete, self._pending = (self._pending + chunk).split(b"\n")
        pieces = [piece for line in complete for piece in _pieces(line.rstrip(b"\r"))]
        if len(self._pending) > MAX_LINE_BYTES:
            # deliver the start of a very long line now; the last piece may still grow
            *early, self._pending = _pieces(self._pending)
            pieces.extend(early)
        return [piece.decode(errors="replace") for piece in pieces]

    def flush(self) -> list[str]:
        rest, self._pending = self._pending, b""
        if not rest:
            return []
        return [piece.decode(errors="replace") for piece in _pieces(rest.rstrip(b"\r"))]


class OutputCollector:
    """Bounded stdout/stderr buffers plus line delivery to an optional `LineSink`."""

    def __init__(
        self,
        on_line: LineSink | None = None,
        *,
        head_bytes: int = HEAD_BYTES,
        tail_bytes: int = TAIL_BYTES,
    ) -> None:
        self._on_line = on_line
        self._buffers = {s: _StreamBuffer(head_bytes, tail_bytes) for s in Stream}
        self._splitters = {s: _LineSplitter() for s in Stream}
        self.stop_requested = False

    def feed(self, stream: Stream, chunk: bytes) -> bool:
        """Take a chunk; return True once the sink has asked to stop."""
        self._buffers[stream].feed(chunk)
        self._deliver(stream, self._splitters[stream].feed(chunk))
        return self.stop_requested

    def finish(self) -> tuple[Output, Output]:
        """Deliver any last unterminated lines and return (stdout, stderr)."""
        for stream in Stream:
            self._deliver(stream, self._splitters[stream].flush())
        return self._buffers[Stream.STDOUT].output(), self._buffers[Stream.STDERR].output()

    def _deliver(self, stream: Stream, lines: list[str]) -> None:
        if self._on_line is None:
            return
        for line in lines:
            if self.stop_requested:
                return
            if self._on_line(stream, line):
                self.stop_requested = True
