"""Versions compared as versions (3.10 follows 3.9), never as strings."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from packaging.version import InvalidVersion as _PackagingInvalid
from packaging.version import Version as _PackagingVersion

from bot.domain.errors import InvalidVersion

# What a version may look like before it is even parsed: digits first, then only characters that
# are safe anywhere (a tag, a path, a shell word). Anything else is refused outright.
_SHAPE = re.compile(r"[0-9][0-9A-Za-z.+_-]{0,63}")


@functools.total_ordering
@dataclass(frozen=True, eq=False)
class Version:
    """A product version: the text as written (used in tags and paths) and its ordering key."""

    text: str
    key: _PackagingVersion = field(repr=False)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self.key == other.key

    def __lt__(self, other: Version) -> bool:
        return self.key < other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __str__(self) -> str:
        return self.text


def parse_version(text: str) -> Version:
    """Parse `text` as a version or raise `InvalidVersion` with the expected form."""
    candidate = text.strip()
    if _SHAPE.fullmatch(candidate):
        try:
            return Version(candidate, _PackagingVersion(candidate))
        except _PackagingInvalid:
            pass
    shown = text if len(text) <= 40 else text[:37] + "..."
    raise InvalidVersion(
        f"`{shown}` is not a version.", "Write it as numbers separated by dots, such as 3.9.1."
    )


def known_versions(texts: Iterable[str]) -> list[Version]:
    """The texts that are versions, sorted oldest first; others (`latest`, ...) are ignored."""
    found = set()
    for text in texts:
        try:
            found.add(parse_version(text))
        except InvalidVersion:
            continue
    return sorted(found)


def versions_between(available: Iterable[Version], low: Version, high: Version) -> list[Version]:
    """Versions in (low, high], oldest first: what an upgrade from low to high passes through."""
    return sorted(v for v in set(available) if low < v <= high)
