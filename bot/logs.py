"""Logging for the long-running bot: every record passes through the redactor before output."""

from __future__ import annotations

import logging

from bot.domain.redaction import Redactor


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's final message (arguments included) and its traceback text."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._redactor.text(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redactor.text(record.exc_text)
        return True


def install(redactor: Redactor, level: int = logging.INFO) -> None:
    """Log to stderr, redacted, at `level` (libraries at WARNING)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(redactor))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in ("bot", "commands", "adapters"):
        logging.getLogger(name).setLevel(level)
