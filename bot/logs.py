"""Logging for the long-running bot: every record passes through the redactor before output.

Two forms. `json` (what `serve` writes unless told otherwise): one JSON object per line, for log
collectors: `time` (UTC, ISO 8601), `level`, `logger`, `message`, `run_id` while a run is being
worked on (`bot.engine.context`), `exception` with the traceback text. `text`: the same, readable
in a terminal.

`RunLog` writes what each run does (its moves, its steps) as it happens, under the logger
`bot.runs`, each line with the run's id.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Literal

from bot.domain.plan import PlannedStep
from bot.domain.redaction import Redactor
from bot.domain.run import Phase, Run, StepResult, StepStatus
from bot.engine.context import current_run

LogFormat = Literal["json", "text"]
LOG_FORMATS: tuple[LogFormat, ...] = ("json", "text")

runs_log = logging.getLogger("bot.runs")


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's final message (arguments included), its traceback and stack
    text, and stamps it with the run the thread works on (`run_id`, None outside a run)."""

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
        if record.stack_info:
            record.stack_info = self._redactor.text(record.stack_info)
        if not hasattr(record, "run_id"):
            record.run_id = current_run.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        run_id = getattr(record, "run_id", None)
        if run_id is not None:
            entry["run_id"] = run_id
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger [run N]: message`, the run only while there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(run)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        run_id = getattr(record, "run_id", None)
        record.run = f" [run {run_id}]" if run_id is not None else ""
        return super().format(record)


def install(
    redactor: Redactor, level: int = logging.INFO, *, log_format: LogFormat = "text"
) -> None:
    """Log to stderr, redacted, at `level` (libraries at WARNING), as JSON lines or text."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RedactingFilter(redactor))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in ("bot", "commands", "adapters"):
        logging.getLogger(name).setLevel(level)


class RunLog:
    """A `RunObserver` that logs each run's moves and steps (not their output: that goes to the
    run's thread and the database)."""

    def state_changed(self, run: Run, reason: str) -> None:
        state = run.state.value.replace("_", " ")
        runs_log.info("run %s now %s: %s", run.id, state, reason, extra={"run_id": run.id})

    def step_started(self, run: Run, phase: Phase, planned: PlannedStep) -> None:
        runs_log.info(
            "run %s: %s step %s `%s` started",
            run.id,
            phase.value,
            planned.number,
            planned.step.id,
            extra={"run_id": run.id},
        )

    def step_finished(self, run: Run, result: StepResult) -> None:
        took = f" in {result.duration:.1f} s" if result.duration is not None else ""
        error = f": {result.error}" if result.error else ""
        level = logging.WARNING if result.status is StepStatus.FAILED else logging.INFO
        runs_log.log(
            level,
            "run %s: %s step %s `%s` %s%s%s",
            run.id,
            result.phase.value,
            result.number,
            result.step_id,
            result.status.value,
            took,
            error,
            extra={"run_id": run.id},
        )

    def output_line(self, run: Run, planned: PlannedStep, line: str) -> None:
        pass

    def transfer(self, run: Run, planned: PlannedStep, done: int, total: int | None) -> None:
        pass

    def finished(self, run: Run) -> None:
        pass
