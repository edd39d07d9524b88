"""Secrets never reach chat or logs: every text leaving the bot passes through a `Redactor`.

Two nets: the exact values the bot knows to be secret (tokens, passwords from the config), and
patterns for secrets it cannot know (Slack tokens, `password=...`, private key blocks, bearer
tokens, credentials in URLs).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MASK = "[redacted]"
MIN_SECRET_LENGTH = 6  # shorter "secrets" would mask ordinary words

# Each pattern keeps its first group (the label) and masks the rest of the match.
_PATTERNS = (
    re.compile(r"()\bxox[abposr]-[A-Za-z0-9-]{8,}"),  # Slack bot/user/app tokens
    re.compile(r"()\bxapp-[A-Za-z0-9-]{8,}"),
    re.compile(
        r"()-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)", re.DOTALL
    ),
    re.compile(r"(?i)(\bbearer )[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(://)[^/\s:@]+:[^/\s@]+(?=@)"),  # user:password@ in URLs
    re.compile(
        r"(?i)(\b(?:password|passwd|pwd|secret|token|api[_-]?key)[\"']?\s{0,3}[=:]\s{0,3}[\"']?)"
        r"[^\s\"',;]{3,}"
    ),
)


class Redactor:
    """Masks known secret values and secret-looking text."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        known = {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}
        # longest first, so a secret containing another is masked whole
        self._known = tuple(sorted(known, key=len, reverse=True))

    def text(self, text: str) -> str:
        for secret in self._known:
            text = text.replace(secret, MASK)
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + MASK, text)
        return text

    def value(self, value: Any) -> Any:
        """Redact every string inside a JSON-like value (message blocks, API arguments)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        return value
