"""The chat port: where the conversation's views go. Slack and the console implement it."""

from __future__ import annotations

from typing import Protocol

from commands.views import HomeView, View


class Chat(Protocol):
    """A chat surface. Implementations render views and must redact secrets before sending."""

    def post(
        self, channel: str, view: View, *, thread_ts: str | None = None, broadcast: bool = False
    ) -> str:
        """Post a message (in a thread if `thread_ts`); returns its ts. `broadcast` also shows a
        thread reply in the channel."""
        ...

    def update(self, channel: str, ts: str, view: View) -> None:
        """Replace a message the bot posted."""
        ...

    def post_ephemeral(self, channel: str, user: str, view: View) -> None:
        """Show a message to one user only."""
        ...

    def upload(
        self, channel: str, thread_ts: str, *, filename: str, content: str, title: str
    ) -> None:
        """Attach a text file in a thread (long output)."""
        ...

    def publish_home(self, user: str, view: HomeView) -> None:
        """Show the user's App Home tab."""
        ...
