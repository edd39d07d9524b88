"""A run as it goes: the progress message edited in place, and a reply per finished step."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from bot.domain.run import Phase, Run, RunState, StepResult, StepStatus, VerificationResult
from bot.slack.blocks_kit import (
    Block,
    code_block,
    context,
    inline_code,
    line_sections,
    mention,
    passage,
    phrase,
    section,
    slack_date,
)
from bot.slack.blocks_plan import versions
from commands.views import (
    ProgressView,
    StepLine,
    StepState,
    StepView,
    count,
    duration,
    transfer_bar,
)

STATE_EMOJI = {
    RunState.PLANNED: ":memo:",
    RunState.AWAITING_APPROVAL: ":hourglass:",
    RunState.APPROVED: ":ballot_box_with_check:",
    RunState.RUNNING: ":arrows_counterclockwise:",
    RunState.WAITING: ":hourglass_flowing_sand:",
    RunState.SUCCEEDED: ":white_check_mark:",
    RunState.FAILED: ":x:",
    RunState.ROLLING_BACK: ":rewind:",
    RunState.ROLLED_BACK: ":leftwards_arrow_with_hook:",
    RunState.ROLLBACK_FAILED: ":rotating_light:",
    RunState.REJECTED: ":no_entry:",
    RunState.EXPIRED: ":hourglass:",
    RunState.CANCELLED: ":no_entry_sign:",
    RunState.INTERRUPTED: ":warning:",
}
STEP_EMOJI = {
    StepState.PENDING: ":white_circle:",
    StepState.RUNNING: ":hourglass_flowing_sand:",
    StepState.SUCCEEDED: ":white_check_mark:",
    StepState.FAILED: ":x:",
}
RESULT_EMOJI = {
    StepStatus.STARTED: ":hourglass_flowing_sand:",
    StepStatus.SUCCEEDED: ":white_check_mark:",
    StepStatus.FAILED: ":x:",
}
PROGRESS_LINES = 40


def state_words(state: RunState) -> str:
    return state.value.replace("_", " ")


def run_title(run: Run) -> str:
    """`MyST Studio 3.9.0 → 3.9.1 on nonprod/studio-1`, raw (callers escape)."""
    plan = run.plan
    return (
        f"{plan.product_title} {versions(plan.from_version, plan.to_version)} "
        f"on {plan.instance_key}"
    )


def run_line(run: Run) -> str:
    """One run on one escaped mrkdwn line, for lists and the home tab."""
    starts = (
        f" · :calendar: starts {slack_date(run.starts_at)}"
        if run.starts_at is not None and run.pending
        else ""
    )
    return (
        f"{STATE_EMOJI[run.state]} *#{run.id}* {phrase(run_title(run))}"
        f" · {state_words(run.state)} · {mention(run.requested_by)} · {slack_date(run.updated_at)}"
        f"{starts}"
    )


def step_number(phase: Phase, number: int) -> str:
    return f"R{number}" if phase is Phase.ROLLBACK else str(number)


# -- progress -----------------------------------------------------------------------------------


def progress_blocks(view: ProgressView) -> list[Block]:
    run = view.run
    blocks = [
        section(
            f"*Run #{run.id}* · {phrase(run_title(run), 500)}\n"
            f"{STATE_EMOJI[run.state]} *{state_words(run.state)}*"
        )
    ]
    start, end = _window(view.steps, PROGRESS_LINES)
    lines = []
    if start:
        lines.append(f"_… {count(start, 'earlier step')} ({_tally(view.steps[:start])})_")
    lines += [_progress_line(step) for step in view.steps[start:end]]
    if end < len(view.steps):
        lines.append(
            f"_… {count(len(view.steps) - end, 'more step')} ({_tally(view.steps[end:])})_"
        )
    blocks += line_sections(lines, budget=6000, noun="step line")
    if view.transfer is not None:
        blocks.append(
            section(f"{phrase(view.transfer.step_title)}\n`{transfer_bar(view.transfer)}`")
        )
    blocks.append(context(f"Updated {slack_date(view.updated_at)}"))
    return blocks


def _progress_line(step: StepLine) -> str:
    took = f" — {duration(step.seconds)}" if step.seconds is not None else ""
    title = phrase(step.title)
    return f"{STEP_EMOJI[step.state]} {step_number(step.phase, step.number)}. {title}{took}"


def _window(steps: Sequence[StepLine], size: int) -> tuple[int, int]:
    """The `size` steps around the last one that started: where the reader's attention is."""
    if len(steps) <= size:
        return 0, len(steps)
    focus = max((i for i, s in enumerate(steps) if s.state is not StepState.PENDING), default=0)
    start = min(max(0, focus - size + 10), len(steps) - size)
    return start, start + size


def _tally(steps: Sequence[StepLine]) -> str:
    states = Counter(step.state for step in steps)
    return ", ".join(f"{n:,} {state.value}" for state, n in states.items())


def progress_text(view: ProgressView) -> str:
    return f"Run #{view.run.id} {state_words(view.run.state)}: {run_title(view.run)}"


# -- one finished step --------------------------------------------------------------------------


def step_blocks(view: StepView) -> list[Block]:
    result = view.result
    blocks = [
        section(
            f"{RESULT_EMOJI[result.status]} {step_headline(result, markup=True)}\n"
            f"{phrase(result.title)}"
        )
    ]
    if result.status is StepStatus.FAILED and result.error:
        blocks.append(section(f":warning: {passage(result.error)}"))
    blocks += output_blocks(result, view.excerpt_lines, caption="Output")
    blocks += evidence_blocks(result)
    return blocks


def step_headline(result: StepResult, *, markup: bool) -> str:
    phase = "Rollback step" if result.phase is Phase.ROLLBACK else "Step"
    done = result.status.value
    took = f" in {duration(result.duration)}" if result.duration is not None else ""
    if markup:
        return f"*{phase} {result.number}* {inline_code(result.step_id)} {done}{took}"
    return f"{phase} {result.number} {result.step_id} {done}{took}"


def output_blocks(result: StepResult, lines: int, *, caption: str) -> list[Block]:
    """The last `lines` lines of a step's output in a code block, with where they came from."""
    command = result.result
    if command is None:
        return [context("No output was recorded for this step.")]
    excerpt = code_block(command.tail(lines).splitlines()[-lines:] if lines > 0 else [])
    total = command.stdout.total_lines + command.stderr.total_lines
    exit_code = "none" if command.exit_code is None else str(command.exit_code)
    return [
        section(f"*{caption}* (last {excerpt.shown} of {count(total, 'line')})\n{excerpt.text}"),
        context(f"{phrase(command.host)} · exit {exit_code} · {inline_code(command.command)}"),
    ]


def evidence_blocks(result: StepResult) -> list[Block]:
    captures = list(result.captures.items())
    lines = [f"{inline_code(name, 80)} = {inline_code(value)}" for name, value in captures[:20]]
    blocks = []
    if lines:
        blocks += line_sections(
            lines, budget=1500, noun="capture", title="*Captured*", total=len(captures)
        )
    checks = [
        f"{verdict(v.passed)} {phrase(v.description, 300)}: {phrase(v.evidence, 500)}"
        for v in failures_first(result.verifications, 20)
    ]
    if checks:
        blocks += line_sections(
            checks,
            budget=1500,
            noun="verification",
            title="*Verified*",
            total=len(result.verifications),
        )
    return blocks


def failures_first(checks: Sequence[VerificationResult], shown: int) -> list[VerificationResult]:
    """The first `shown` checks; when some must be left out, the failed ones are kept first."""
    if len(checks) <= shown:
        return list(checks)
    return sorted(checks, key=lambda v: v.passed)[:shown]


def verdict(passed: bool) -> str:
    return ":white_check_mark: PASS" if passed else ":x: FAIL"


def step_text(view: StepView) -> str:
    return f"Run #{view.run_id}: {step_headline(view.result, markup=False)}"
