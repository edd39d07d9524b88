"""Terminal renderings: what an operator reads at 80 columns, whatever the data."""

from __future__ import annotations

import io
import re
from dataclasses import replace

import pytest
from rich.cells import cell_len
from rich.console import Console

from bot.console.render import render
from bot.domain.approval import Tally
from bot.domain.output import Output
from bot.domain.run import RunState, StepStatus
from bot.engine.report import build_report
from commands.views import (
    ApprovalView,
    HelpView,
    HomeView,
    Notice,
    PlanView,
    RunDetailView,
    RunListView,
    StepView,
    SummaryView,
    Tone,
    View,
)
from tests.factories import make_command_result, make_plan, make_result
from tests.unit.test_slack_blocks import (
    NASTY_VIEWS,
    make_approval,
    make_report,
    make_run,
    sample_views,
)


def show(view: View) -> str:
    console = Console(file=io.StringIO(), width=80, color_system=None)
    console.print(render(view))
    output = console.file.getvalue()
    assert isinstance(output, str)
    return output


@pytest.mark.parametrize("view", sample_views(), ids=lambda v: type(v).__name__)
def test_every_view_fits_80_columns(view: View) -> None:
    text = show(view)
    assert text.strip()
    assert max(cell_len(line) for line in text.splitlines()) <= 80


@pytest.mark.parametrize(("name", "view"), NASTY_VIEWS, ids=[n for n, _ in NASTY_VIEWS])
def test_adversarial_data_stays_readable(name: str, view: View) -> None:
    text = show(view)
    assert max(cell_len(line) for line in text.splitlines()) <= 80
    assert len(text) < 2_000_000  # megabytes of input never print in full
    assert "\x1b" not in text


def test_the_plan_shows_steps_previews_rollback_and_its_digest() -> None:
    plan = make_plan()
    text = show(PlanView(plan=plan, requested_by="U0REQ", run_id=12))
    assert "Upgrade plan: MyST Studio 3.9.0 → 3.9.1" in text
    for fact in ("nonprod", "studio-1 (studio-1.example.com)", "in-place", "2-5 minutes"):
        assert fact in text
    assert "/opt/myst-studio/backup/" in text
    assert "@U0REQ" in text
    assert "#12" in text
    assert "Read the start-up log ⚠ destructive" in text
    assert "pull 3.9.1" in text
    assert "restore <backup_path>" in text
    assert "Rollback (automatically if a step fails" in text
    assert f"Approval is bound to plan {plan.digest}" in text


def test_a_dry_run_has_no_run_number() -> None:
    text = show(PlanView(plan=make_plan(), requested_by="U0REQ"))
    assert "Dry run: MyST Studio 3.9.0 → 3.9.1" in text
    assert not re.search(r"#\d", text)
    assert "Run " not in text


def test_an_open_approval_names_the_commands_to_type() -> None:
    text = show(ApprovalView(approval=make_approval()))
    assert "@U0ALICE, @U0BOB, @U0CAROL" in text
    assert "1 of 2 (@U0ALICE), 1 more needed" in text
    assert "Expires    2026-11-22 11:30 UTC" in text
    assert "type approve 12 or reject 12" in text


@pytest.mark.parametrize(
    ("state", "says"),
    [
        (RunState.APPROVED, "✔ Approved by @U0ALICE."),
        (RunState.REJECTED, "✖ Rejected by @U0BOB."),
        (RunState.EXPIRED, "Expired without a decision."),
        (RunState.CANCELLED, "Cancelled."),
    ],
)
def test_a_closed_approval_says_its_outcome_instead(state: RunState, says: str) -> None:
    tally = Tally(
        required=1,
        approved_by=("U0ALICE",),
        rejected_by=("U0BOB",) if state is RunState.REJECTED else (),
    )
    text = show(ApprovalView(approval=make_approval(make_run(state=state), tally=tally)))
    assert says in text
    assert "approve 12" not in text


def test_summary_shows_backup_marked_errors_and_evidence() -> None:
    text = show(SummaryView(report=make_report()))
    assert "upgraded and verified" in text
    assert "Backup: /opt/myst-studio/backup/myst-studio-1.sql" in text
    assert "1 error line, marked !!" in text
    assert "│ !! ERROR cannot reach license server <https://evil.example|click>" in text
    assert "│    Starting MyST Studio 3.9.1" in text
    assert "PASS no errors at start-up: 0 error lines" in text
    assert "Back up the database    12.5 s" in text


def test_summary_of_a_failure_shows_the_step_and_its_output_tail() -> None:
    text = show(SummaryView(report=make_report(RunState.FAILED)))
    assert "failed; the instance was not rolled back" in text
    assert "✖ Step 3 startup-log failed in 12.5 s" in text
    assert "The start-up log shows errors." in text
    assert "Output tail (last 4 of 4 lines)" in text
    assert "FAIL no errors at start-up: 1 error line" in text


def test_summary_without_backup_says_so() -> None:
    text = show(SummaryView(report=replace(make_report(), backup_path=None)))
    assert "No backup was taken." in text


def test_error_lines_before_the_excerpt_are_still_shown() -> None:
    log = "ERROR early trouble\n" + "".join(f"fine {i}\n" for i in range(100))
    text = show(SummaryView(report=make_report(log=log)))
    assert "Error lines before the excerpt (first 1 of 1)" in text
    assert "!! ERROR early trouble" in text
    assert "fine 59" not in text  # only the last 40 lines of the log
    assert "fine 60" in text


def test_a_step_shows_a_bounded_excerpt_captures_and_evidence() -> None:
    lines = "".join(f"line {i}\n" for i in range(100))
    output = Output(head=lines, total_bytes=len(lines), total_lines=100)
    result = make_result(result=make_command_result(stdout=output, stderr=Output()))
    text = show(StepView(run_id=12, result=result, excerpt_lines=15))
    assert "✔ Step 2 backup succeeded in 12.5 s" in text
    assert "Output (last 15 of 100 lines)" in text
    assert "line 85 " in text
    assert "line 84 " not in text
    assert "backup_path  /opt/myst-studio/backup/myst-studio-1.sql" in text
    assert "PASS the backup file is not empty: 2.1 MB" in text


def test_a_failed_step_says_why() -> None:
    result = make_result(status=StepStatus.FAILED, error="The backup script exited with 3.")
    text = show(StepView(run_id=12, result=result))
    assert "✖ Step 2 backup failed in 12.5 s" in text
    assert "The backup script exited with 3." in text


def test_output_cannot_drive_the_terminal_or_inject_markup() -> None:
    hostile = "\x1b[2J\x1b]0;owned\x07[bold red]fake[/bold red] \x9b31m\n"
    output = Output(head=hostile, total_bytes=len(hostile), total_lines=1)
    result = make_result(result=make_command_result(stdout=output, stderr=Output()))
    text = show(StepView(run_id=1, result=result))
    assert "\x1b" not in text
    assert "\x9b" not in text
    assert "\x07" not in text
    assert "[bold red]fake[/bold red]" in text


def test_cuts_are_visible() -> None:
    views = dict(NASTY_VIEWS)
    assert "… 1,800 more steps" in show(views["plan"])
    assert "[… truncated]" in show(views["step"])
    assert "… 300 more runs" in show(views["history"])


def test_run_detail_of_a_run_awaiting_approval_shows_tally_and_plan() -> None:
    run = make_run()
    text = show(RunDetailView(report=build_report(run, []), approval=make_approval(run)))
    assert "awaiting approval" in text
    assert "1 of 2 (@U0ALICE), 1 more needed" in text
    assert "Planned steps" in text
    assert "pull 3.9.1" in text


def test_run_list_and_its_empty_form() -> None:
    runs = (make_run(state=RunState.SUCCEEDED), make_run(id=13, state=RunState.FAILED))
    text = show(RunListView(title="History", runs=runs))
    assert "History" in text
    assert "12   MyST Studio" in text
    assert "succeeded" in text
    assert "failed" in text
    assert "No runs yet." in show(RunListView(title="History", runs=(), empty="No runs yet."))


def test_help_lists_the_commands_products_and_environments() -> None:
    text = show(HelpView(products=("myst-studio (myst)",), environments=("nonprod", "prod")))
    for form in (
        "<product> <version> [env=E]",
        "status [run]",
        "history [product] [env]",
        "cancel <run>",
        "lock <env> <reason>",
        "unlock <env>",
        "approve <run>",
        "reject <run>",
    ):
        assert form in text
    assert "• myst-studio (myst)" in text
    assert "• prod" in text


@pytest.mark.parametrize(
    ("tone", "icon"),
    [(Tone.INFO, "ℹ"), (Tone.SUCCESS, "✔"), (Tone.WARNING, "⚠"), (Tone.ERROR, "✖")],
)
def test_notice_has_an_icon_by_tone_and_readable_mentions(tone: Tone, icon: str) -> None:
    text = show(Notice(text="prod is locked by <@U0ALICE>: incident", tone=tone))
    assert text.strip() == f"{icon} prod is locked by @U0ALICE: incident"


def test_home_shows_active_awaiting_and_recent_runs() -> None:
    active = make_run(state=RunState.RUNNING)
    done = make_run(id=11, state=RunState.SUCCEEDED)
    view = HomeView(user="U0BOB", active=(active,), awaiting=(make_approval(),), recent=(done,))
    text = show(view)
    assert "Active runs" in text
    assert "Awaiting approval" in text
    assert "waiting for @U0BOB, @U0CAROL" in text
    assert "your vote is needed" in text
    assert "Recent runs" in text
    assert "11   MyST Studio" in text
