"""`python -m bot console`: the Slack conversation in a terminal, typed as named users."""

from __future__ import annotations

import os
from collections.abc import Callable

from rich.console import Console

from bot.domain.approval import Decision
from commands.conversation import Conversation

CHANNEL = "#upgrades"
HELP = """Type the slash command as in Slack, e.g. /upgrade myst 3.9.1 env=prod
  approve <run> | reject <run>   vote on a run as the current user
  as <user>                      act as another user
  home                           the current user's App Home
  help | quit"""


class NoDirectory:
    """Implements `Directory` where no chat workspace exists: user groups have no members, and
    people's time zone is the one named by `TZ` here (else UTC)."""

    def group_members(self, group: str) -> frozenset[str]:
        return frozenset()

    def time_zone(self, user: str) -> str | None:
        return os.environ.get("TZ") or None


class ConsoleSession:
    """Reads lines, acts as `user`, and hands each to the conversation."""

    def __init__(self, conversation: Conversation, console: Console, *, user: str) -> None:
        self.conversation = conversation
        self.console = console
        self.user = user

    def handle(self, line: str) -> bool:
        """Act on one line; False once the user wants to leave."""
        words = line.split()
        if not words:
            return True
        verb = words[0].lower()
        if verb in ("quit", "exit"):
            return False
        if verb == "help":
            self.console.print(HELP, markup=False, highlight=False)
        elif verb in ("/upgrade", "upgrade"):
            self.conversation.command(" ".join(words[1:]), user=self.user, channel=CHANNEL)
        elif verb in ("approve", "reject") and len(words) == 2:
            self._vote(Decision(verb), words[1])
        elif verb == "as" and len(words) == 2:
            self.user = words[1]
            self.console.print(f"You are now {self.user}.", markup=False)
        elif verb == "home":
            self.conversation.home(self.user)
        else:
            self.console.print(
                f"`{line.strip()}` is not a console command. Type help.",
                markup=False,
                highlight=False,
            )
        return True

    def loop(self, read: Callable[[str], str] = input) -> int:
        self.console.print(HELP, markup=False, highlight=False)
        while True:
            try:
                line = read(f"{self.user}> ")
            except (EOFError, KeyboardInterrupt):
                return 0
            if not self.handle(line):
                return 0

    def _vote(self, decision: Decision, word: str) -> None:
        digits = word.removeprefix("#")
        if not digits.isdigit():
            self.console.print(
                f"`{word}` is not a run number, e.g. {decision.value} 12.", markup=False
            )
            return
        self.conversation.vote(
            user=self.user,
            channel=CHANNEL,
            ts="",
            decision=decision,
            via="console",
            run_id=int(digits),
        )
