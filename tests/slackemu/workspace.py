"""What the emulated workspace holds: people, user groups, messages, ephemerals, files, Home tabs.

Kept apart from the HTTP layer so that tests read it through snapshots (`Message`, `Upload`, ...),
never through the live, lock-guarded structures the server threads mutate.
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

TEAM_ID = "T0EMU0001"
TEAM_NAME = "Emulated Workspace"
BOT_USER_ID = "U0BOT0001"
BOT_ID = "B0BOT0001"
APP_ID = "A0APP0001"


@dataclass(frozen=True, kw_only=True)
class Person:
    """A member of the workspace as `users.info` describes them."""

    id: str
    name: str
    real_name: str
    tz: str
    tz_label: str
    is_bot: bool = False

    def as_user(self) -> dict[str, Any]:
        # Slack reports the offset in force today, so daylight saving time shows as it would.
        offset = datetime.now(UTC).astimezone(ZoneInfo(self.tz)).utcoffset()
        seconds = int(offset.total_seconds()) if offset is not None else 0
        profile = {"real_name": self.real_name, "display_name": self.name, "team": TEAM_ID}
        return {
            "id": self.id,
            "team_id": TEAM_ID,
            "name": self.name,
            "deleted": False,
            "real_name": self.real_name,
            "tz": self.tz,
            "tz_label": self.tz_label,
            "tz_offset": seconds,
            "is_bot": self.is_bot,
            "is_app_user": False,
            "profile": profile,
        }


def _seed(user_id: str, name: str, real_name: str, tz: str, tz_label: str) -> Person:
    return Person(id=user_id, name=name, real_name=real_name, tz=tz, tz_label=tz_label)


# People in several time zones, for messages that name a time in each approver's own zone.
SEED_PEOPLE = (
    _seed("U0ALICE01", "alice", "Alice Approver", "Europe/Berlin", "Central European Time"),
    _seed("U0BOB0001", "bob", "Bob Builder", "America/New_York", "Eastern Standard Time"),
    _seed("U0CAROL01", "carol", "Carol Operator", "Asia/Kolkata", "India Standard Time"),
    _seed("U0DAVE001", "dave", "Dave Requester", "UTC", "Coordinated Universal Time"),
    Person(
        id=BOT_USER_ID,
        name="upgrade-bot",
        real_name="Upgrade Bot",
        tz="UTC",
        tz_label="Coordinated Universal Time",
        is_bot=True,
    ),
)
SEED_GROUPS = {
    "S0APPROVE": ("U0ALICE01", "U0BOB0001"),
    "S0PRODOPS": ("U0CAROL01",),
}


@dataclass(frozen=True, kw_only=True)
class Version:
    """What a message said before a `chat.update` replaced it."""

    text: str
    blocks: list[dict[str, Any]]


@dataclass(frozen=True, kw_only=True)
class Message:
    """A message as it stands now; `previous` lists its earlier versions, oldest first."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    user: str
    thread_ts: str | None = None
    reply_broadcast: bool = False
    files: tuple[str, ...] = ()
    reactions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    previous: tuple[Version, ...] = ()
    replies: tuple[Message, ...] = ()

    @property
    def edits(self) -> int:
        return len(self.previous)


@dataclass(frozen=True, kw_only=True)
class Ephemeral:
    """A message only `user` saw (`chat.postEphemeral`)."""

    channel: str
    user: str
    message_ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None = None


@dataclass(frozen=True, kw_only=True)
class Upload:
    """A file of the external upload flow; `shared` once `files.completeUploadExternal` ran."""

    id: str
    filename: str
    length: int
    content: bytes | None = None
    title: str | None = None
    channel: str | None = None
    thread_ts: str | None = None
    initial_comment: str | None = None
    shared: bool = False


@dataclass(frozen=True, kw_only=True)
class HomeView:
    """The App Home tab last published for a user."""

    id: str
    user: str
    view: dict[str, Any]
    hash: str


class _Clock:
    """Message timestamps like Slack's: "<epoch seconds>.<6 digits>", unique and increasing."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next_ts(self) -> str:
        with self._lock:
            self._last = max(self._last + 1, int(time.time() * 1_000_000))
            seconds, micros = divmod(self._last, 1_000_000)
            return f"{seconds}.{micros:06d}"


@dataclass
class StoredMessage:
    """A message as the server keeps and changes it; tests see `Message` snapshots instead."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    user: str
    thread_ts: str | None
    reply_broadcast: bool
    files: list[str] = field(default_factory=list)
    reactions: dict[str, list[str]] = field(default_factory=dict)
    previous: list[Version] = field(default_factory=list)


class Workspace:
    """The mutable state behind the emulator. Callers hold `lock` around every use."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.clock = _Clock()
        self._ids = itertools.count(1)
        self.people: dict[str, Person] = {}
        self.groups: dict[str, tuple[str, ...]] = {}
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.people = {p.id: p for p in SEED_PEOPLE}
            self.groups = dict(SEED_GROUPS)
            self.stored: dict[tuple[str, str], StoredMessage] = {}
            self.ephemerals: list[Ephemeral] = []
            self.uploads: dict[str, Upload] = {}
            self.homes: dict[str, HomeView] = {}

    def new_id(self, prefix: str) -> str:
        return f"{prefix}0EMU{next(self._ids):05d}"

    def post(
        self,
        *,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]],
        thread_ts: str | None = None,
        reply_broadcast: bool = False,
        files: list[str] | None = None,
    ) -> StoredMessage:
        ts = self.clock.next_ts()
        stored = StoredMessage(
            channel,
            ts,
            text,
            copy.deepcopy(blocks),
            BOT_USER_ID,
            thread_ts,
            reply_broadcast,
            files=list(files or []),
        )
        self.stored[(channel, ts)] = stored
        return stored

    def find(self, channel: str, ts: str) -> StoredMessage | None:
        return self.stored.get((channel, ts))

    def snapshot(self, stored: StoredMessage, replies: tuple[Message, ...] = ()) -> Message:
        return Message(
            channel=stored.channel,
            ts=stored.ts,
            text=stored.text,
            blocks=copy.deepcopy(stored.blocks),
            user=stored.user,
            thread_ts=stored.thread_ts,
            reply_broadcast=stored.reply_broadcast,
            files=tuple(stored.files),
            reactions={name: tuple(users) for name, users in stored.reactions.items()},
            previous=tuple(stored.previous),
            replies=replies,
        )

    def messages(self, channel: str) -> list[Message]:
        """Top-level messages of `channel` in order, each with its thread replies."""
        in_channel = sorted(
            (s for s in self.stored.values() if s.channel == channel), key=lambda s: s.ts
        )
        threads: dict[str, list[StoredMessage]] = {}
        for s in in_channel:
            if s.thread_ts is not None and s.thread_ts != s.ts:
                threads.setdefault(s.thread_ts, []).append(s)
        return [
            self.snapshot(s, tuple(self.snapshot(r) for r in threads.get(s.ts, [])))
            for s in in_channel
            if s.thread_ts is None or s.thread_ts == s.ts
        ]

    def threads(self, channel: str) -> dict[str, list[Message]]:
        """Replies of `channel` by `thread_ts`, also replies to parents the emulator never saw."""
        grouped: dict[str, list[Message]] = {}
        for s in sorted(self.stored.values(), key=lambda s: s.ts):
            if s.channel == channel and s.thread_ts is not None and s.thread_ts != s.ts:
                grouped.setdefault(s.thread_ts, []).append(self.snapshot(s))
        return grouped
