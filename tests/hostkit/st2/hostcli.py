"""What the `st2` CLI helpers of a StackStorm test host share: the host, the cipher, tables.

The st2 CLI prints PrettyTable tables: left-aligned cells padded by one space, wrapped at 28
characters a column (55 for the values of a property table), several lines of a row centred.
Run by the test host's own Python (`<root>/opt/stackstorm/st2/bin/python`), standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import textwrap
from pathlib import Path
from typing import Any

API = "http://127.0.0.1:9101"


class Host:
    """The state of one test host, read from its files under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "var" / "lib" / "st2-hostkit"
        self.version = version_tuple(self.installed()["st2"])
        self.settings = dict(
            line.split("=", 1) for line in (self.state / "settings").read_text().splitlines()
        )
        self.python2 = self.settings.get("PYTHON_VERSION", "3").startswith("2.")

    def installed(self) -> dict[str, str]:
        lines = (self.state / "installed").read_text().splitlines()
        return dict(line.split(" ", 1) for line in lines if line)

    def journal(self, line: str) -> None:
        with (self.state / "journal").open("a") as journal:
            journal.write(line + "\n")

    def running(self, process: str) -> bool:
        """Whether the service process runs (its pid file names a live process of this host)."""
        try:
            pid = (self.root / "var" / "run" / "st2" / f"{process}.pid").read_text().split()[0]
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, IndexError):
            return False
        exe = str(self.root / "opt" / "stackstorm" / "st2" / "bin" / process)
        return stat.rsplit(")", 1)[1].split()[0] != "Z" and exe.encode() in cmdline

    def dumps(self, data: object) -> str:
        """JSON as the CLI prints it; Python 2's json put a space after each comma."""
        separators = (", ", ": ") if self.python2 else (",", ": ")
        return json.dumps(data, indent=4, sort_keys=True, separators=separators)


class DecryptError(Exception):
    """The value was not encrypted with this host's datastore key."""


class Cipher:
    """Encrypts datastore secrets with a host's key file (the format of st2's datastore_key.json).

    Not st2's AES: a SHA-256 keyed stream and an HMAC tag, printed as upper-case hex like st2's
    ciphertext; what matters is that only the same key file decrypts it."""

    def __init__(self, key_file: Path) -> None:
        key = json.loads(key_file.read_text())
        self.aes = base64.urlsafe_b64decode(key["aesKeyString"])
        self.mac = base64.urlsafe_b64decode(key["hmacKey"]["hmacKeyString"])

    def _xor(self, iv: bytes, data: bytes) -> bytes:
        blocks = (
            hashlib.sha256(self.aes + iv + n.to_bytes(8, "big")).digest() for n in range(len(data))
        )
        stream = b"".join(blocks)[: len(data)]
        return bytes(a ^ b for a, b in zip(data, stream, strict=True))

    def _tag(self, body: bytes) -> bytes:
        return hmac.new(self.mac, body, hashlib.sha256).digest()[:16]

    def encrypt(self, plain: str) -> str:
        iv = secrets.token_bytes(16)
        body = iv + self._xor(iv, plain.encode())
        return (body + self._tag(body)).hex().upper()

    def decrypt(self, cipher: str) -> str:
        try:
            raw = bytes.fromhex(cipher)
        except ValueError as exc:
            raise DecryptError(cipher) from exc
        body, tag = raw[:-16], raw[-16:]
        if len(raw) < 32 or not hmac.compare_digest(self._tag(body), tag):
            raise DecryptError(cipher)
        return self._xor(body[:16], body[16:]).decode()


def version_tuple(version: str) -> tuple[int, ...]:
    """3.10.0 -> (3, 10, 0): versions compare as versions, 3.5 as 3.5.0."""
    parts = [int(part) for part in version.split("-")[0].split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, indent=4)
    return str(value)


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    for line in text.splitlines() or [""]:
        lines.extend(textwrap.wrap(line, width) or [""])
    return lines


def table(headers: list[str], rows: list[list[Any]], widths: list[int] | None = None) -> str:
    """A PrettyTable with a header; `widths` are the columns' maximum widths (28 each)."""
    limits = widths or [28] * len(headers)
    cells = [
        [_wrap(cell(value), limit) for value, limit in zip(row, limits, strict=True)]
        for row in rows
    ]
    sizes = [len(header) for header in headers]
    for row in cells:
        for index, lines in enumerate(row):
            sizes[index] = max(sizes[index], *(len(line) for line in lines))
    border = "+" + "+".join("-" * (size + 2) for size in sizes) + "+"

    def line(values: list[str]) -> str:
        padded = (f" {value.ljust(size)} " for value, size in zip(values, sizes, strict=True))
        return "|" + "|".join(padded) + "|"

    out = [border, line(headers), border]
    for row in cells:
        height = max(len(lines) for lines in row)
        for index in range(height):
            values = []
            for lines in row:
                top = (height - len(lines)) // 2
                inside = 0 <= index - top < len(lines)
                values.append(lines[index - top] if inside else "")
            out.append(line(values))
    out.append(border)
    return "\n".join(out)


def note_box(note: str) -> str:
    """The one-cell box the CLI prints under a list cut at its limit."""
    border = "+" + "-" * (len(note) + 2) + "+"
    return f"{border}\n| {note} |\n{border}"


def property_table(values: dict[str, Any]) -> str:
    return table(["Property", "Value"], [[k, v] for k, v in values.items()], [20, 55])


def error(message: str, code: int = 1) -> int:
    """Print an error as the CLI does (on stdout, then a blank line); returns the exit code."""
    print(f"ERROR: {message}\n")
    return code


def http_error(status: str, message: str, path: str) -> int:
    print(f"ERROR: {status}\nMESSAGE: {message} for url: {API}{path}")
    return 1


def server_error(path: str) -> int:
    """What the CLI prints when the API fails on a value it cannot decrypt."""
    return http_error("500 Server Error: Internal Server Error", "Internal Server Error", path)


def cwd_path(name: str) -> Path:
    return Path(os.path.normpath(os.path.join(os.getcwd(), name)))
