"""The terminal chat: redacted output, progress edits shown only when they say something new."""

import io
from dataclasses import replace

from rich.console import Console

from bot.console.chat import ConsoleChat
from bot.domain.redaction import Redactor
from bot.domain.run import RunState
from commands.views import Notice, ProgressView, Transfer
from tests.factories import AT
from tests.unit.test_slack_blocks import make_run


def _chat() -> tuple[ConsoleChat, io.StringIO]:
    out = io.StringIO()
    return ConsoleChat(
        Console(file=out, width=100, color_system=None), Redactor(["hunter2-password"])
    ), out


def test_an_upload_shows_a_progress_bar_a_line_per_tenth():
    chat, out = _chat()
    run = make_run(state=RunState.RUNNING)
    ts = chat.post("#c", ProgressView(run=run, steps=(), updated_at=AT))
    total = 100 * 1_048_576
    for done in range(0, total + 1, total // 50):
        transfer = Transfer(step_title="Upload the image archive", done=done, total=total)
        chat.update("#c", ts, ProgressView(run=run, steps=(), updated_at=AT, transfer=transfer))
    bars = [line for line in out.getvalue().splitlines() if "Upload the image archive:" in line]
    assert len(bars) == 11  # 0%, 10%, ... 100%: not one line per edit
    assert bars[-1].strip().endswith("100% (100 of 100 MB)")


def test_secrets_never_reach_the_terminal():
    chat, out = _chat()
    chat.post("#c", Notice(text="the password is hunter2-password"))
    assert "hunter2-password" not in out.getvalue()


def test_progress_edits_print_only_when_the_run_state_changes():
    chat, out = _chat()
    run = make_run(state=RunState.RUNNING)
    ts = chat.post("#c", ProgressView(run=run, steps=(), updated_at=AT))
    before = out.getvalue()
    chat.update("#c", ts, ProgressView(run=run, steps=(), updated_at=AT))
    assert out.getvalue() == before
    chat.update(
        "#c", ts, ProgressView(run=replace(run, state=RunState.SUCCEEDED), steps=(), updated_at=AT)
    )
    assert out.getvalue() != before
