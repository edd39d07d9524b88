"""The bot's log lines: one JSON object per line (or text), redacted, naming their run."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bot import logs
from bot.domain.redaction import Redactor
from bot.domain.run import Run, RunState, StepStatus
from bot.engine.context import working_on
from tests.factories import AT, make_plan, make_result

TOKEN = "xoxb-1111-2222-secretsecret"


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    """The root logger as `serve` installs it (JSON), writing to a buffer; restored after."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield io.StringIO()
    root.handlers[:], level = saved
    root.setLevel(level)


def _install(stream: io.StringIO, log_format: logs.LogFormat) -> None:
    logs.install(Redactor([TOKEN]), log_format=log_format)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_time_level_logger_message_and_the_run(output: io.StringIO) -> None:
    _install(output, "json")
    before = datetime.now(UTC)
    logging.getLogger("bot.engine.runner").warning("outside a run")
    with working_on(42):
        logging.getLogger("adapters.ssh").info("line one\nline two")
    outside, inside = _lines(output)
    assert outside["level"] == "WARNING"
    assert outside["logger"] == "bot.engine.runner"
    assert outside["message"] == "outside a run"
    assert "run_id" not in outside
    assert inside["run_id"] == 42
    assert inside["message"] == "line one\nline two"  # escaped: still one line of output
    assert len(output.getvalue().splitlines()) == 2
    stamp = str(inside["time"])
    assert stamp.endswith("Z")
    at = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert at.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= at <= datetime.now(UTC) + timedelta(seconds=1)


def test_json_lines_are_redacted_in_message_arguments_and_exception(
    output: io.StringIO,
) -> None:
    _install(output, "json")
    try:
        raise RuntimeError(f"Slack said no to {TOKEN}")
    except RuntimeError:
        logging.getLogger("bot").exception("calling with %s failed", TOKEN)
    logging.getLogger("commands").info("no libraries below WARNING: %s", "password=hunter2hunter2")
    failure, plain = _lines(output)
    assert TOKEN not in output.getvalue()
    assert "hunter2hunter2" not in output.getvalue()
    assert failure["message"] == "calling with [redacted] failed"
    assert "Traceback" in str(failure["exception"])
    assert "RuntimeError: Slack said no to [redacted]" in str(failure["exception"])
    assert plain["message"] == "no libraries below WARNING: password=[redacted]"


def test_libraries_log_at_warning_and_the_bot_at_info(output: io.StringIO) -> None:
    _install(output, "json")
    logging.getLogger("waitress").info("a library's chatter")
    logging.getLogger("waitress").warning("a library's warning")
    logging.getLogger("adapters.scheduler").info("the bot's own news")
    assert [line["message"] for line in _lines(output)] == [
        "a library's warning",
        "the bot's own news",
    ]


def test_text_lines_stay_readable_and_name_the_run(output: io.StringIO) -> None:
    _install(output, "text")
    with working_on(7):
        logging.getLogger("bot.engine.runner").warning("token %s in a run", TOKEN)
    logging.getLogger("bot").warning("no run here")
    inside, outside = output.getvalue().splitlines()
    assert inside.endswith("WARNING bot.engine.runner [run 7]: token [redacted] in a run")
    assert outside.endswith("WARNING bot: no run here")
    with pytest.raises(json.JSONDecodeError):
        json.loads(inside)


def test_the_run_log_writes_each_move_and_step_with_the_run_id(output: io.StringIO) -> None:
    _install(output, "json")
    run = Run(
        id=12,
        plan=make_plan(),
        state=RunState.RUNNING,
        requested_by="U0ALICE01",
        created_at=AT,
        updated_at=AT,
    )
    failed = make_result(
        run_id=12,
        status=StepStatus.FAILED,
        finished_at=AT + timedelta(seconds=2.5),
        error="exit 3",
    )
    run_log = logs.RunLog()
    run_log.state_changed(run, "started")
    run_log.step_finished(run, failed)
    moved, step = _lines(output)
    assert moved == {
        "time": moved["time"],
        "level": "INFO",
        "logger": "bot.runs",
        "message": "run 12 now running: started",
        "run_id": 12,
    }
    assert step["level"] == "WARNING"
    assert step["run_id"] == 12
    assert step["message"] == "run 12: upgrade step 2 `backup` failed in 2.5 s: exit 3"
