"""Block Kit renderings: content per view, and Slack's limits kept whatever the data."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from bot.domain.approval import Tally
from bot.domain.output import CommandResult, Output
from bot.domain.plan import Plan, PlannedStep
from bot.domain.run import Phase, Run, RunState, StepResult, StepStatus, VerificationResult
from bot.engine.approvals import Approval
from bot.engine.report import RunReport, build_report
from bot.slack.blocks import (
    APPROVE_ACTION,
    APPROVE_REACTIONS,
    REJECT_ACTION,
    REJECT_REACTIONS,
    Message,
    parse_button_value,
    render,
    render_home,
)
from bot.slack.blocks_kit import cap_blocks, context, section
from bot.slack.blocks_report import RESUME_ACTION, ROLLBACK_ACTION
from commands.views import (
    ApprovalView,
    HelpView,
    HomeView,
    InterruptedView,
    Notice,
    PlanView,
    ProgressView,
    RunDetailView,
    RunListView,
    StepLine,
    StepState,
    StepView,
    SummaryView,
    Tone,
    View,
)
from tests.factories import AT, at, make_command_result, make_plan, make_result, make_step

# -- the validator ------------------------------------------------------------------------------

BLOCK_TYPES = {"header", "section", "context", "actions", "divider"}
# Our own `<…>` tokens: user mentions and dates. Anything else in angle brackets was not escaped.
TOKEN = re.compile(r"<(@[A-Za-z0-9._-]+|!date\^\d+\^[^|<>]+\|[^<>]+)>")
ENTITY = re.compile(r"&(amp|lt|gt);")


def _text(obj: Any, limit: int, kind: str | None = None) -> str:
    assert isinstance(obj, dict), obj
    assert obj["type"] in ({kind} if kind else {"plain_text", "mrkdwn"}), obj
    text = obj["text"]
    assert isinstance(text, str)
    assert 1 <= len(text) <= limit, (len(text), limit, text[:200])
    if obj["type"] == "mrkdwn":
        _check_mrkdwn(text)
    return text


def _check_mrkdwn(text: str) -> None:
    rest = TOKEN.sub("", text)
    assert "<" not in rest, f"unescaped < in {text[:300]!r}"
    assert ">" not in rest, f"unescaped > in {text[:300]!r}"
    assert "&" not in ENTITY.sub("", rest), f"unescaped & in {text[:300]!r}"
    assert text.count("```") % 2 == 0, f"unbalanced code fence in {text[:300]!r}"


def check_limits(
    blocks: list[dict[str, Any]], *, max_blocks: int = 50, max_chars: int = 12_000
) -> None:
    """Every Block Kit limit the renderers promise to keep (Slack's reference, 2026).

    `max_chars` bounds all text together: Slack answers `msg_blocks_too_long` from about 13,000
    characters in a message, a limit it does not document (slackapi/bolt-js#2509).
    """
    assert 1 <= len(blocks) <= max_blocks, len(blocks)
    assert len(texts(blocks)) <= max_chars
    for block in blocks:
        kind = block["type"]
        assert kind in BLOCK_TYPES, kind
        assert len(block.get("block_id", "")) <= 255
        if kind == "header":
            _text(block["text"], 150, "plain_text")
        elif kind == "section":
            assert "text" in block or "fields" in block
            if "text" in block:
                _text(block["text"], 3000)
            if "fields" in block:
                assert 1 <= len(block["fields"]) <= 10
                for field in block["fields"]:
                    _text(field, 2000)
        elif kind == "context":
            assert 1 <= len(block["elements"]) <= 10
            for element in block["elements"]:
                _text(element, 3000)
        elif kind == "actions":
            assert 1 <= len(block["elements"]) <= 25
            for element in block["elements"]:
                assert element["type"] == "button"
                _text(element["text"], 75, "plain_text")
                assert len(element["value"]) <= 2000
                assert 1 <= len(element["action_id"]) <= 255
                confirm = element.get("confirm")
                if confirm:
                    _text(confirm["title"], 100, "plain_text")
                    _text(confirm["text"], 300, "plain_text")
                    _text(confirm["confirm"], 30, "plain_text")
                    _text(confirm["deny"], 30, "plain_text")


def check_message(message: Message) -> None:
    check_limits(message.blocks)
    assert 1 <= len(message.text) <= 2000  # Slack allows 40,000; a notification is one glance
    _check_mrkdwn(message.text)


def texts(blocks: list[dict[str, Any]], *, kind: str | None = None) -> str:
    """Every text in the blocks (of one `kind` if given), one per line, for assertions."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str) and kind in (None, node.get("type")):
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(blocks)
    return "\n".join(found)


def buttons(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for b in blocks if b["type"] == "actions" for e in b["elements"]]


# -- records ------------------------------------------------------------------------------------


def make_run(plan: Plan | None = None, **overrides: Any) -> Run:
    fields: dict[str, Any] = {
        "id": 12,
        "plan": plan or make_plan(),
        "state": RunState.AWAITING_APPROVAL,
        "requested_by": "U0REQ",
        "created_at": AT,
        "updated_at": at(5),
    }
    fields.update(overrides)
    return Run(**fields)


def make_approval(run: Run | None = None, **overrides: Any) -> Approval:
    run = run or make_run()
    fields: dict[str, Any] = {
        "run": run,
        "digest": run.plan.digest,
        "tally": Tally(required=2, approved_by=("U0ALICE",), rejected_by=()),
        "approvers": frozenset({"U0ALICE", "U0BOB", "U0CAROL"}),
        "expires_at": at(120),
    }
    fields.update(overrides)
    return Approval(**fields)


STARTUP_LOG = (
    "Starting MyST Studio 3.9.1\n"
    "ERROR cannot reach license server <https://evil.example|click>\n"
    "Migrating schema & data\n"
    "MyST Studio 3.9.1 started\n"
)


def _output(text: str) -> Output:
    return Output(head=text, total_bytes=len(text.encode()), total_lines=text.count("\n"))


def make_report(state: RunState = RunState.SUCCEEDED, log: str = STARTUP_LOG) -> RunReport:
    run = make_run(state=state)
    failed = state is RunState.FAILED
    steps = [
        make_result(12, "pull", number=1, title="Pull the new image", captures={}),
        make_result(12, "backup"),
        make_result(
            12,
            "startup-log",
            number=3,
            title="Read the start-up log",
            captures={},
            status=StepStatus.FAILED if failed else StepStatus.SUCCEEDED,
            error="The start-up log shows errors." if failed else "",
            result=make_command_result(
                command="/opt/myst-studio/bin/output-logs.sh", stdout=_output(log), stderr=Output()
            ),
            verifications=(
                VerificationResult(
                    description="no errors at start-up",
                    passed=not failed,
                    evidence="1 error line" if failed else "0 error lines",
                ),
            ),
        ),
    ]
    return build_report(run, steps)


def sample_views() -> list[View]:
    run = make_run(state=RunState.RUNNING)
    return [
        Notice(text="Run #12 is queued.", tone=Tone.SUCCESS),
        HelpView(products=("myst-studio (myst)",), environments=("nonprod", "prod")),
        PlanView(plan=make_plan(), requested_by="U0REQ", run_id=12),
        PlanView(plan=make_plan(), requested_by="U0REQ"),
        ApprovalView(approval=make_approval()),
        ApprovalView(approval=make_approval(make_run(state=RunState.REJECTED))),
        ProgressView(
            run=run,
            steps=(
                StepLine(
                    phase=Phase.UPGRADE,
                    number=1,
                    title="Pull",
                    state=StepState.SUCCEEDED,
                    seconds=3.2,
                ),
                StepLine(phase=Phase.UPGRADE, number=2, title="Back up", state=StepState.RUNNING),
                StepLine(phase=Phase.UPGRADE, number=3, title="Start", state=StepState.PENDING),
            ),
            updated_at=at(1),
        ),
        StepView(run_id=12, result=make_result()),
        SummaryView(report=make_report()),
        SummaryView(report=make_report(RunState.FAILED)),
        RunDetailView(report=make_report(), approval=make_approval()),
        RunDetailView(report=build_report(make_run(), [])),
        RunListView(title="History", runs=(run, make_run(id=13))),
        RunListView(title="History", runs=()),
        HomeView(user="U0BOB", active=(run,), awaiting=(make_approval(),), recent=(run,)),
        InterruptedView(
            run=make_run(state=RunState.INTERRUPTED),
            reason="The bot process running it stopped while step 4 `stop` was running.",
            can_resume=True,
        ),
    ]


# -- adversarial data ---------------------------------------------------------------------------

HUGE = "x" * 1_000_000
NASTY = "<!channel> & <@U0EVIL|boss> ```rm -rf /``` `tick` *bold* \n\n <https://x.example|y>"


def nasty_plan(steps: int = 2000) -> Plan:
    planned = tuple(
        PlannedStep(
            number=n,
            step=make_step(
                f"s{n}", title=f"{NASTY} step {n} {'t' * (n % 7) * 300}", destructive=n % 3 == 0
            ),
            preview=f"{NASTY} {HUGE if n == 1 else 'p' * n}",
        )
        for n in range(1, steps + 1)
    )
    return make_plan(
        product_title=NASTY + HUGE,
        environment=NASTY * 100,
        instance=HUGE,
        address=NASTY,
        strategy=NASTY,
        from_version=HUGE,
        to_version=NASTY,
        steps=planned,
        rollback=planned[:500],
        backup_location=HUGE + NASTY,
        expected_outage=NASTY * 1000,
        downgrade=True,
    )


def nasty_command(lines: int = 5000) -> CommandResult:
    text = "\n".join(
        f"ERROR {NASTY} {i}" if i % 10 == 0 else f"line {i} ```{NASTY}" for i in range(lines)
    )
    text += "\n" + "ERROR " + "<&>`" * 250_000 + "\n"  # a 1 MB line of characters to escape
    return make_command_result(
        host=NASTY * 50, command=HUGE, exit_code=None, stdout=_output(text), stderr=_output(HUGE)
    )


def nasty_result(number: int = 1, status: StepStatus = StepStatus.FAILED) -> StepResult:
    return make_result(
        12,
        f"s{number}" + "`" * 300,
        number=number,
        title=NASTY + HUGE,
        status=status,
        error=NASTY * 2000,
        result=nasty_command(),
        captures={f"{NASTY}{i}": NASTY * 100 for i in range(500)},
        verifications=tuple(
            VerificationResult(description=NASTY * 20, passed=i % 2 == 0, evidence=NASTY * 50)
            for i in range(500)
        ),
    )


def nasty_run(plan: Plan, run_id: int = 12, state: RunState = RunState.FAILED) -> Run:
    return make_run(plan, id=run_id, state=state, requested_by=NASTY)


def nasty_approval(plan: Plan, state: RunState = RunState.AWAITING_APPROVAL) -> Approval:
    users = tuple(f"U{i:08d}" for i in range(500))
    return make_approval(
        nasty_run(plan, state=state),
        tally=Tally(required=300, approved_by=users[:200], rejected_by=(*users[200:400], NASTY)),
        approvers=frozenset((*users, NASTY)),
    )


def nasty_views() -> Iterator[tuple[str, View]]:
    plan = nasty_plan()
    small = make_plan(steps=plan.steps[:3], rollback=())
    runs = tuple(nasty_run(plan, run_id=i, state=list(RunState)[i % 13]) for i in range(500))
    steps = tuple(
        StepLine(
            phase=Phase.ROLLBACK if n > 1500 else Phase.UPGRADE,
            number=n,
            title=NASTY + HUGE if n % 100 == 0 else NASTY,
            state=StepState.SUCCEEDED
            if n < 1200
            else StepState.RUNNING
            if n == 1200
            else StepState.PENDING,
            seconds=float(n) * 1000,
        )
        for n in range(1, 2001)
    )
    results = [nasty_result(n, StepStatus.SUCCEEDED) for n in range(1, 60)] + [nasty_result(60)]
    startup = plan.steps[0].step
    plan_with_log = replace(
        plan,
        steps=(replace(plan.steps[0], step=replace(startup, role=make_plan().steps[2].step.role)),),
    )
    report = build_report(nasty_run(plan_with_log), results)
    report = replace(
        report,
        startup_log=nasty_command().stdout,
        error_patterns=(r"\bERROR\b", "[unclosed"),
        backup_path=HUGE,
    )
    yield "notice", Notice(text=NASTY * 100_000, tone=Tone.ERROR)
    yield "interrupted", InterruptedView(run=runs[1], reason=NASTY * 100_000, can_resume=False)
    yield "help", HelpView(products=(NASTY * 50,) * 500, environments=(HUGE,) * 500)
    yield "plan", PlanView(plan=plan, requested_by=NASTY, run_id=10**30)
    yield "dry run", PlanView(plan=plan, requested_by="U" * 5000)
    yield "plan with no steps", PlanView(plan=make_plan(steps=(), rollback=()), requested_by="U1")
    yield "small plan", PlanView(plan=small, requested_by="U1", run_id=1)
    yield "approval open", ApprovalView(approval=nasty_approval(plan))
    yield (
        "huge digest",
        ApprovalView(approval=make_approval(make_run(replace(make_plan(), digest="d" * 5000)))),
    )
    for state in (RunState.APPROVED, RunState.REJECTED, RunState.EXPIRED, RunState.CANCELLED):
        yield f"approval {state}", ApprovalView(approval=nasty_approval(plan, state))
    yield "progress", ProgressView(run=runs[1], steps=steps, updated_at=at(3))
    yield "progress empty", ProgressView(run=runs[1], steps=(), updated_at=at(3))
    yield "step", StepView(run_id=12, result=nasty_result(), excerpt_lines=10_000)
    yield "step without output", StepView(run_id=12, result=replace(nasty_result(), result=None))
    yield "summary", SummaryView(report=report)
    yield "detail", RunDetailView(report=report, approval=nasty_approval(plan))
    yield "detail of a run not started", RunDetailView(report=build_report(runs[0], []))
    yield "history", RunListView(title=NASTY * 1000, runs=runs)
    yield "history empty", RunListView(title=HUGE, runs=(), empty=HUGE)
    yield (
        "home",
        HomeView(
            user=NASTY,
            active=runs,
            awaiting=tuple(nasty_approval(plan) for _ in range(100)),
            recent=runs,
        ),
    )


NASTY_VIEWS = list(nasty_views())


# -- every view ---------------------------------------------------------------------------------


@pytest.mark.parametrize("view", sample_views(), ids=lambda v: type(v).__name__)
def test_every_view_renders_within_limits(view: View) -> None:
    message = render(view)
    check_message(message)
    assert render(view) == message  # a pure function: same view, same message


@pytest.mark.parametrize(("name", "view"), NASTY_VIEWS, ids=[n for n, _ in NASTY_VIEWS])
def test_adversarial_data_never_breaks_a_limit(name: str, view: View) -> None:
    message = render(view)
    check_message(message)
    # plain_text is shown as typed and never pings; mrkdwn must have every `<` escaped
    everything = texts(message.blocks, kind="mrkdwn")
    assert "<!channel>" not in everything
    assert "<@U0EVIL" not in everything
    assert "<https://" not in everything


def test_adversarial_home_tab_stays_within_its_own_limit() -> None:
    home = dict(NASTY_VIEWS)["home"]
    assert isinstance(home, HomeView)
    published = render_home(home)
    assert published["type"] == "home"
    check_limits(published["blocks"], max_blocks=100, max_chars=30_000)


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("plan", r"… [\d,]+ more steps"),
        ("plan", r"\*Rollback\* \(automatically.*\n(.*\n)*_… [\d,]+ more steps_"),
        ("plan", r"\[… truncated\]"),
        ("progress", "earlier steps"),
        ("progress", "more steps"),
        ("history", r"… [\d,]+ more runs"),
        ("step", r"\[… truncated\]"),
        ("step", "more captures"),
        ("summary", "more verifications"),
    ],
)
def test_cuts_are_visible(name: str, shown: str) -> None:
    assert re.search(shown, texts(render(dict(NASTY_VIEWS)[name]).blocks))


# -- the plan -----------------------------------------------------------------------------------


def test_plan_shows_what_will_happen_and_binds_approval_to_its_digest() -> None:
    plan = make_plan()
    blocks = render(PlanView(plan=plan, requested_by="U0REQ", run_id=12)).blocks
    assert blocks[0] == {
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": "Upgrade plan: MyST Studio 3.9.0 → 3.9.1",
            "emoji": True,
        },
    }
    shown = texts(blocks)
    for fact in ("nonprod", "studio-1 (studio-1.example.com)", "in-place", "2-5 minutes"):
        assert fact in shown
    assert "`/opt/myst-studio/backup/`" in shown
    assert "<@U0REQ>" in shown
    assert "#12" in shown
    assert "*3.* Read the start-up log  :warning: *destructive*" in shown
    assert "*1.* Pull the new image\n" in shown
    assert "`pull 3.9.1`" in shown
    assert "`restore &lt;backup_path&gt;`" in shown  # a capture placeholder, escaped
    assert "automatically if a step fails" in shown
    assert f"Approval is bound to plan `{plan.digest}`" in shown


def test_a_dry_run_plan_has_no_run_number() -> None:
    blocks = render(PlanView(plan=make_plan(), requested_by="U0REQ")).blocks
    assert blocks[0]["text"]["text"].startswith("Dry run: MyST Studio")
    labels = [f["text"].split("\n")[0] for b in blocks for f in b.get("fields", [])]
    assert "*Run*" not in labels
    assert not re.search(r"#\d", texts(blocks))  # no run number anywhere
    assert not buttons(blocks)


def test_a_plan_without_automatic_rollback_says_when_it_applies() -> None:
    plan = make_plan(auto_rollback=False)
    shown = texts(render(PlanView(plan=plan, requested_by="U1", run_id=1)).blocks)
    assert "on request, after a new approval" in shown


# -- approval -----------------------------------------------------------------------------------


def test_an_open_approval_has_both_buttons_bound_to_the_plan() -> None:
    approval = make_approval()
    message = render(ApprovalView(approval=approval))
    approve, reject = buttons(message.blocks)
    value = f"12:{approval.run.plan.digest}"
    assert (approve["action_id"], approve["style"], approve["value"]) == (
        APPROVE_ACTION,
        "primary",
        value,
    )
    assert (reject["action_id"], reject["style"], reject["value"]) == (
        REJECT_ACTION,
        "danger",
        value,
    )
    assert parse_button_value(approve["value"]) == (12, approval.run.plan.digest)
    shown = texts(message.blocks)
    assert "<@U0ALICE>, <@U0BOB>, <@U0CAROL>" in shown
    assert "*1 of 2* in (<@U0ALICE>), 1 more needed" in shown
    assert "<!date^1795347000^{date_short_pretty} {time}|2026-11-22 11:30 UTC>" in shown
    assert "You can also react with :white_check_mark: to approve or :x: to reject." in shown
    assert "1 more approval" in message.text


@pytest.mark.parametrize(
    ("state", "says"),
    [
        (RunState.APPROVED, "*Approved* by <@U0ALICE>."),
        (RunState.RUNNING, "*Approved* by <@U0ALICE>; the run is now running."),
        (RunState.REJECTED, "*Rejected* by <@U0BOB>."),
        (RunState.EXPIRED, "*Expired* without a decision."),
        (RunState.CANCELLED, "*Cancelled*."),
    ],
)
def test_a_closed_approval_says_its_outcome_instead_of_buttons(state: RunState, says: str) -> None:
    tally = Tally(
        required=1,
        approved_by=("U0ALICE",),
        rejected_by=("U0BOB",) if state is RunState.REJECTED else (),
    )
    view = ApprovalView(approval=make_approval(make_run(state=state), tally=tally))
    message = render(view)
    assert not buttons(message.blocks)
    assert says in texts(message.blocks)
    assert "react with" not in texts(message.blocks)


def test_rejections_are_named_while_open() -> None:
    tally = Tally(required=2, approved_by=(), rejected_by=("U0BOB",))
    shown = texts(render(ApprovalView(approval=make_approval(tally=tally))).blocks)
    assert "Rejected by: <@U0BOB>" in shown


def test_reactions_and_actions_are_exported() -> None:
    assert {"white_check_mark", "heavy_check_mark"} == APPROVE_REACTIONS
    assert {"x"} == REJECT_REACTIONS
    assert (APPROVE_ACTION, REJECT_ACTION) == ("upgrade_approve", "upgrade_reject")


@pytest.mark.parametrize(
    "garbage", ["", "12", "12:", ":abc", "x:abc", "-1:abc", "1:2:3", "١٢:abc", " 12:abc"]
)
def test_parse_button_value_refuses_garbage(garbage: str) -> None:
    with pytest.raises(ValueError, match="not an approval button value"):
        parse_button_value(garbage)


# -- a run as it goes ---------------------------------------------------------------------------


def test_progress_shows_each_step_with_its_state_and_duration() -> None:
    view = sample_views()[6]
    assert isinstance(view, ProgressView)
    shown = texts(render(view).blocks)
    assert "*Run #12*" in shown
    assert ":arrows_counterclockwise: *running*" in shown
    assert ":white_check_mark: 1. Pull — 3.2 s" in shown
    assert ":hourglass_flowing_sand: 2. Back up" in shown
    assert ":white_circle: 3. Start" in shown
    assert "Updated <!date^1795339860^" in shown


def test_progress_of_a_long_run_shows_the_steps_around_the_current_one() -> None:
    shown = texts(render(dict(NASTY_VIEWS)["progress"]).blocks)
    assert "1,169 earlier steps (1,169 succeeded)" in shown
    assert ":hourglass_flowing_sand: 1200." in shown
    assert "791 more steps (791 pending)" in shown


def test_a_step_reply_has_its_outcome_bounded_output_captures_and_evidence() -> None:
    lines = "\n".join(f"line {i}" for i in range(100)) + "\n"
    result = make_result(result=make_command_result(stdout=_output(lines), stderr=Output()))
    message = render(StepView(run_id=12, result=result, excerpt_lines=15))
    shown = texts(message.blocks)
    assert "*Step 2* `backup` succeeded in 12.5 s" in shown
    assert "(last 15 of 100 lines)" in shown
    assert "line 85\n" in shown
    assert "line 84\n" not in shown
    assert "line 99\n```" in shown
    assert "`backup_path` = `/opt/myst-studio/backup/myst-studio-1.sql`" in shown
    assert ":white_check_mark: PASS the backup file is not empty: 2.1 MB" in shown
    assert message.text == "Run #12: Step 2 backup succeeded in 12.5 s"


def test_a_failed_step_says_why() -> None:
    result = make_result(status=StepStatus.FAILED, error="The backup script exited with 3.")
    shown = texts(render(StepView(run_id=12, result=result)).blocks)
    assert ":x: *Step 2* `backup` failed in 12.5 s" in shown
    assert "The backup script exited with 3." in shown


def test_triple_backticks_in_output_cannot_close_the_code_block() -> None:
    output = _output("before\n```\n<!channel> after ``` and ````\n")
    result = make_result(result=make_command_result(stdout=output, stderr=Output()))
    section = next(
        b["text"]["text"]
        for b in render(StepView(run_id=1, result=result)).blocks
        if "Output" in b.get("text", {}).get("text", "")
    )
    assert section.count("```") == 2
    assert "&lt;!channel&gt; after" in section


# -- the end of a run ---------------------------------------------------------------------------


def test_summary_has_outcome_backup_marked_log_and_evidence() -> None:
    message = render(SummaryView(report=make_report()))
    shown = texts(message.blocks)
    assert ":white_check_mark: *upgraded and verified*" in shown
    assert ":floppy_disk: *Backup:* `/opt/myst-studio/backup/myst-studio-1.sql`" in shown
    assert "(last 4 of 4 lines; 1 error line, marked `!!`)" in shown
    assert "!! ERROR cannot reach license server &lt;https://evil.example|click&gt;" in shown
    assert "   Starting MyST Studio 3.9.1" in shown
    assert "   Migrating schema &amp; data" in shown
    assert ":white_check_mark: PASS no errors at start-up: 0 error lines" in shown
    assert ":white_check_mark: 2. Back up the database — 12.5 s" in shown
    assert "nonprod/studio-1" in shown
    assert "3.9.0 → 3.9.1" in shown
    assert "/opt/myst-studio/backup/myst-studio-1.sql" in message.text


def test_summary_of_a_failure_names_the_step_and_its_output_tail() -> None:
    shown = texts(render(SummaryView(report=make_report(RunState.FAILED))).blocks)
    assert ":x: *failed; the instance was not rolled back*" in shown
    assert ":x: *Step 3* `startup-log` failed in 12.5 s" in shown
    assert "The start-up log shows errors." in shown
    assert "*Output tail* (last 4 of 4 lines)" in shown
    assert ":x: FAIL no errors at start-up: 1 error line" in shown


def test_summary_finds_error_lines_before_the_excerpt() -> None:
    log = "ERROR early trouble\n" + "".join(f"fine {i}\n" for i in range(100))
    shown = texts(render(SummaryView(report=make_report(log=log))).blocks)
    assert "no error lines" not in shown
    assert "*Error lines before the excerpt* (first 1 of 1)" in shown
    assert "!! ERROR early trouble" in shown


def test_summary_without_a_backup_says_so() -> None:
    report = replace(make_report(), backup_path=None)
    assert ":warning: *No backup was taken.*" in texts(render(SummaryView(report=report)).blocks)


def test_run_detail_of_a_run_awaiting_approval_shows_the_tally_and_the_plan() -> None:
    run = make_run()
    view = RunDetailView(report=build_report(run, []), approval=make_approval(run))
    shown = texts(render(view).blocks)
    assert "*1 of 2* in" in shown
    assert "*Planned steps*" in shown
    assert "`pull 3.9.1`" in shown
    assert not buttons(render(view).blocks)


# -- lists, help, notices, home -----------------------------------------------------------------


def test_run_list_has_one_line_per_run_or_says_it_is_empty() -> None:
    runs = (make_run(state=RunState.SUCCEEDED), make_run(id=13, state=RunState.FAILED))
    shown = texts(render(RunListView(title="History", runs=runs)).blocks)
    assert ":white_check_mark: *#12* MyST Studio 3.9.0 → 3.9.1 on nonprod/studio-1" in shown
    assert ":x: *#13*" in shown
    assert texts(render(RunListView(title="History", runs=(), empty="No runs yet.")).blocks) == (
        "*History*\nNo runs yet."
    )


def test_help_shows_the_grammar_products_and_environments() -> None:
    view = HelpView(products=("myst-studio (myst)",), environments=("nonprod", "prod"))
    shown = texts(render(view).blocks)
    assert (
        "/upgrade &lt;product&gt; &lt;version&gt; [env=E] [strategy=S] [instance=I] "
        "[at=TIME] [window=W] [--dry-run] [--allow-downgrade]"
    ) in shown
    for form in (
        "help",
        "status [run]",
        "history [product] [env]",
        "cancel &lt;run&gt;",
        "schedule list | schedule cancel &lt;run&gt;",
    ):
        assert f"/upgrade {form}" in shown
    assert "lock &lt;env&gt; &lt;reason&gt;" in shown
    assert "unlock &lt;env&gt;" in shown
    assert "• myst-studio (myst)" in shown
    assert "• nonprod" in shown
    assert "• prod" in shown


@pytest.mark.parametrize(
    ("tone", "emoji"),
    [
        (Tone.INFO, ":information_source:"),
        (Tone.SUCCESS, ":white_check_mark:"),
        (Tone.WARNING, ":warning:"),
        (Tone.ERROR, ":x:"),
    ],
)
def test_notice_has_an_emoji_by_tone_and_keeps_only_real_mentions(tone: Tone, emoji: str) -> None:
    message = render(Notice(text="<@U0ALICE> locked prod: <!channel> & co", tone=tone))
    assert texts(message.blocks) == f"{emoji} <@U0ALICE> locked prod: &lt;!channel&gt; &amp; co"
    assert "<" not in message.text


def test_mentions_are_built_only_from_plausible_user_ids() -> None:
    plan = make_plan()
    shown = texts(render(PlanView(plan=plan, requested_by="U1> <!here", run_id=1)).blocks)
    assert "<!here" not in shown
    assert "U1&gt; &lt;!here" in shown


def test_home_tab_lists_active_awaiting_and_recent_runs() -> None:
    active = make_run(state=RunState.RUNNING)
    done = make_run(id=11, state=RunState.SUCCEEDED)
    home = render_home(
        HomeView(user="U0BOB", active=(active,), awaiting=(make_approval(),), recent=(done,))
    )
    assert home["type"] == "home"
    check_limits(home["blocks"], max_blocks=100, max_chars=30_000)
    shown = texts(home["blocks"])
    assert "*Active runs*\n:arrows_counterclockwise: *#12*" in shown
    assert "1 of 2 approvals · waiting for <@U0BOB>, <@U0CAROL>" in shown
    assert "*your vote is needed*" in shown
    assert "*Recent runs*\n:white_check_mark: *#11*" in shown
    empty = texts(render_home(HomeView(user="U1", active=(), awaiting=(), recent=()))["blocks"])
    assert empty.count("_None._") == 4  # active, awaiting, scheduled, recent


def test_times_come_from_the_records_not_a_clock() -> None:
    run = make_run(updated_at=AT + timedelta(days=400))
    line = texts(render(RunListView(title="t", runs=(run,))).blocks)
    assert "|2027-12-27 09:30 UTC>" in line


def test_the_safety_net_keeps_the_footer_and_says_what_it_cut() -> None:
    blocks = [section(f"part {i} " + "x" * 1000) for i in range(60)] + [context("footer")]
    capped = cap_blocks(blocks, max_blocks=50, max_chars=12_000)
    check_limits(capped)
    assert capped[-1] == context("footer")
    assert capped[-2] == context("_… 49 more parts not shown: the message would be too long._")
    assert len(capped) == 13  # 11 parts of ~1,000 characters, the note, the footer
    assert cap_blocks(blocks[:3], max_blocks=50, max_chars=12_000) == blocks[:3]


def test_an_interrupted_run_offers_resume_and_rollback_by_run_number() -> None:
    run = make_run(id=7, state=RunState.INTERRUPTED)
    view = InterruptedView(run=run, reason="It stopped at step 4 `stop`.", can_resume=True)
    message = render(view)
    buttons = [e for b in message.blocks if b["type"] == "actions" for e in b["elements"]]
    assert [(b["action_id"], b["value"]) for b in buttons] == [
        (RESUME_ACTION, "7"),
        (ROLLBACK_ACTION, "7"),
    ]
    assert all("confirm" in b for b in buttons)  # a click is asked again: it acts at once
    assert "`/upgrade resume 7`" in texts(message.blocks)
    rolling_back = render(replace(view, can_resume=False))
    buttons = [e for b in rolling_back.blocks if b["type"] == "actions" for e in b["elements"]]
    assert [b["action_id"] for b in buttons] == [ROLLBACK_ACTION]
    assert "resume" not in texts(rolling_back.blocks)
