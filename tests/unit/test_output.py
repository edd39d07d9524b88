"""OutputCollector and Output: bounded buffers, line delivery, early stop."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from bot.domain.output import (
    MAX_LINE_BYTES,
    CommandResult,
    Output,
    OutputCollector,
    Stream,
)


class Sink:
    """Records lines; asks to stop at the line equal to `stop_at`."""

    def __init__(self, stop_at: str | None = None) -> None:
        self.lines: list[tuple[Stream, str]] = []
        self.stop_at = stop_at

    def __call__(self, stream: Stream, line: str) -> bool:
        self.lines.append((stream, line))
        return line == self.stop_at

    def of(self, stream: Stream) -> list[str]:
        return [line for s, line in self.lines if s is stream]


def collect(
    data: bytes, *, chunk_sizes: list[int] | None = None, head: int = 64, tail: int = 128
) -> tuple[Output, list[str]]:
    sink = Sink()
    collector = OutputCollector(sink, head_bytes=head, tail_bytes=tail)
    position = 0
    for size in chunk_sizes or [len(data)]:
        collector.feed(Stream.STDOUT, data[position : position + size])
        position += size
    collector.feed(Stream.STDOUT, data[position:])
    out, _ = collector.finish()
    return out, sink.of(Stream.STDOUT)


def random_chunks(length: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    sizes: list[int] = []
    while sum(sizes) < length:
        sizes.append(rng.choice([1, 2, 3, 7, 64, 1000, 5000]))
    return sizes


def test_small_output_is_kept_whole_and_counted() -> None:
    out, lines = collect(b"one\ntwo\nthree\n")
    assert out.text == "one\ntwo\nthree\n"
    assert (out.total_bytes, out.total_lines, out.truncated) == (14, 3, False)
    assert lines == ["one", "two", "three"]


@pytest.mark.parametrize(
    ("data", "lines"),
    [(b"", 0), (b"\n", 1), (b"a", 1), (b"a\nb", 2), (b"a\nb\n", 2), (b"\n\n\n", 3)],
)
def test_total_lines_counts_like_wc_plus_an_unterminated_last_line(data: bytes, lines: int) -> None:
    out, delivered = collect(data)
    assert out.total_lines == lines
    assert len(delivered) == lines


def test_streams_are_kept_and_delivered_separately_in_order() -> None:
    sink = Sink()
    collector = OutputCollector(sink)
    collector.feed(Stream.STDOUT, b"out 1\nout")
    collector.feed(Stream.STDERR, b"err 1\r\n")
    collector.feed(Stream.STDOUT, b" 2\n")
    collector.feed(Stream.STDERR, b"err 2 unterminated")
    out, err = collector.finish()
    assert sink.lines == [
        (Stream.STDOUT, "out 1"),
        (Stream.STDERR, "err 1"),  # CRLF arrives without the CR
        (Stream.STDOUT, "out 2"),
        (Stream.STDERR, "err 2 unterminated"),  # delivered by finish()
    ]
    assert out.text == "out 1\nout 2\n"
    assert err.text == "err 1\r\nerr 2 unterminated"  # the kept copy is the raw stream


def test_chunking_never_changes_lines_or_output() -> None:
    data = b"".join(
        [
            b"short\n",
            b"x" * MAX_LINE_BYTES + b"\n",  # exactly the piece size: one line, however it arrives
            b"y" * (2 * MAX_LINE_BYTES + 5) + b"\r\n",
            "caf\u00e9 \u20ac \U0001f680\n".encode() * 50,
            b"no newline at the end",
        ]
    )
    whole = collect(data, head=1000, tail=3000)
    for seed in range(5):
        assert collect(data, chunk_sizes=random_chunks(len(data), seed), head=1000, tail=3000) == (
            whole
        )
    out, lines = whole
    piece = MAX_LINE_BYTES
    assert [len(line) for line in lines[:5]] == [5, piece, piece, piece, 5]
    assert out.total_lines == 3 + 50 + 1  # a long line is one line, even if delivered in pieces


def test_long_lines_are_delivered_in_bounded_pieces_without_splitting_characters() -> None:
    line = "\u20ac" * MAX_LINE_BYTES  # 3 bytes each: MAX_LINE_BYTES is not a multiple of 3
    _, lines = collect(line.encode() + b"\n", chunk_sizes=[4096] * 20)
    assert "".join(lines) == line
    assert all(len(piece.encode()) <= MAX_LINE_BYTES for piece in lines)


def test_output_beyond_the_limits_keeps_head_and_tail_and_counts_everything() -> None:
    data = b"".join(b"line %05d\n" % i for i in range(10_000))  # 110,000 bytes
    out, lines = collect(data, chunk_sizes=[4096] * 40, head=1000, tail=2000)
    assert len(lines) == 10_000
    assert (out.total_bytes, out.total_lines, out.truncated) == (110_000, 10_000, True)
    assert out.head == data[:1000].decode()
    assert len(out.tail.encode()) <= 2000
    assert out.tail.startswith("line ")
    assert out.tail.endswith("line 09999\n")
    assert out.omitted_bytes == 110_000 - 1000 - len(out.tail.encode())
    assert f"[... {out.omitted_bytes} bytes not kept ...]" in out.text
    assert out.last_lines(2) == ["line 09998", "line 09999"]


def test_memory_stays_bounded_while_feeding() -> None:
    collector = OutputCollector(head_bytes=100, tail_bytes=100)
    for _ in range(1000):
        collector.feed(Stream.STDOUT, b"z" * 1000)
    buffer = collector._buffers[Stream.STDOUT]
    assert len(buffer._head) + len(buffer._tail) <= 100 + 2 * 100 + 1
    out, _ = collector.finish()
    assert (out.total_bytes, out.tail) == (1_000_000, "z" * 100)


def test_a_tail_that_already_starts_a_line_loses_no_line() -> None:
    # the kept tail (10 bytes) begins exactly after a newline, in one chunk or byte by byte
    data = b"H" * 10 + b"dropped line\n" * 5 + b"kept line\n"
    for chunks in (None, [1] * len(data)):
        out, _ = collect(data, chunk_sizes=chunks, head=10, tail=10)
        assert out.tail == "kept line\n"


def test_a_long_last_line_keeps_its_end() -> None:
    out, _ = collect(b"y" * 500 + b"END\n", head=10, tail=20)
    assert out.tail == "y" * 16 + "END\n"
    assert out.last_lines(1) == ["y" * 16 + "END"]


def test_a_character_split_at_the_head_limit_survives() -> None:
    text = "a" * 9 + "\u20acbc"
    out, _ = collect(text.encode(), head=10, tail=100)
    assert out.text == text
    assert not out.truncated
    assert out.head == "a" * 9


def test_a_character_split_at_the_tail_start_is_dropped_not_garbled() -> None:
    out, _ = collect(("\u20ac" * 100).encode(), head=3, tail=10)
    assert out.tail == "\u20ac" * 3
    assert out.truncated


def test_binary_output_is_reported_truncated() -> None:
    out, _ = collect(b"\xff" * 300, head=10, tail=10)
    assert out.truncated
    assert out.omitted_bytes == 280
    assert "[... 280 bytes not kept ...]" in out.text


def test_last_lines_reads_across_the_head_and_tail_boundary() -> None:
    out, _ = collect(b"first line\nsecond line\nthird\n", head=15, tail=100)
    assert not out.truncated
    assert out.last_lines(3) == ["first line", "second line", "third"]
    assert out.last_lines(0) == []


def test_a_hand_made_output_is_truncated_when_it_counts_more_than_it_holds() -> None:
    assert Output(head="ab", tail="cd", total_bytes=10).truncated
    assert not Output(head="ab", tail="cd", total_bytes=4).truncated


def test_stop_request_ends_delivery() -> None:
    sink = Sink(stop_at="stop here")
    collector = OutputCollector(sink)
    assert collector.feed(Stream.STDOUT, b"a\nstop here\nb\n") is True
    assert collector.feed(Stream.STDERR, b"later\n") is True
    out, err = collector.finish()
    assert sink.lines == [(Stream.STDOUT, "a"), (Stream.STDOUT, "stop here")]
    assert collector.stop_requested
    assert (out.total_lines, err.total_lines) == (3, 1)  # what arrived is still counted


def test_a_sink_returning_none_keeps_reading() -> None:
    seen: list[str] = []
    collector = OutputCollector(lambda _stream, line: seen.append(line))
    assert collector.feed(Stream.STDOUT, b"a\nb\n") is False
    collector.finish()
    assert seen == ["a", "b"]


def result(
    exit_code: int | None, *, stopped_early: bool = False, out: str = "", err: str = ""
) -> CommandResult:
    return CommandResult(
        host="h",
        command="c",
        exit_code=exit_code,
        stdout=Output(head=out, total_bytes=len(out.encode())),
        stderr=Output(head=err, total_bytes=len(err.encode())),
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        duration=0.1,
        stopped_early=stopped_early,
    )


def test_command_result_ok() -> None:
    assert result(0).ok
    assert not result(1).ok
    assert not result(None).ok  # never finished and not stopped on purpose
    assert result(None, stopped_early=True).ok
    assert not result(2, stopped_early=True).ok


def test_command_result_tail_puts_stderr_last() -> None:
    r = result(1, out="o1\no2\no3\n", err="e1\ne2\n")
    assert r.tail(3) == "o3\ne1\ne2"
    assert r.tail(10) == "o1\no2\no3\ne1\ne2"
