"""Records of the conversation around runs: where a run's messages are, and environment locks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.domain.errors import SafetyRefusal


@dataclass(frozen=True, kw_only=True)
class ChatThread:
    """Where a run's conversation lives: the plan message (its thread) and the messages in it."""

    run_id: int
    channel: str
    plan_ts: str  # the plan message; its thread holds the rest
    approval_ts: str = ""  # the thread message with the approval request and buttons
    progress_ts: str = ""  # the one progress message, edited in place


@dataclass(frozen=True, kw_only=True)
class EnvLock:
    """An environment closed to upgrades, by whom and why (e.g. during an incident)."""

    environment: str
    locked_by: str
    reason: str
    at: datetime


class EnvironmentLocked(SafetyRefusal):
    """An upgrade was asked for, or about to start, in a locked environment."""

    def __init__(self, lock: EnvLock) -> None:
        self.lock = lock
        super().__init__(
            f"{lock.environment} is locked by <@{lock.locked_by}>: {lock.reason}. "
            f"Nothing can be upgraded there until `/upgrade unlock {lock.environment}`."
        )
