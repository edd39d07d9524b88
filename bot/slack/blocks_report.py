"""The end of a run: outcome, backup, failure, start-up log, verifications and durations."""

from __future__ import annotations

from collections.abc import Sequence

from bot.domain.output import Output
from bot.domain.run import Phase, RunState, StepResult
from bot.engine.report import RunReport, error_lines
from bot.slack.blocks_kit import (
    Block,
    button,
    code_block,
    confirm_dialog,
    context,
    divider,
    escape,
    fields,
    header,
    inline_code,
    line_sections,
    mention,
    passage,
    phrase,
    section,
    slack_date,
)
from bot.slack.blocks_plan import versions
from bot.slack.blocks_run import (
    RESULT_EMOJI,
    STATE_EMOJI,
    output_blocks,
    run_title,
    step_headline,
    step_number,
    verdict,
)
from commands.views import InterruptedView, SummaryView, count, duration

ERROR_MARK = "!! "  # prefixes a start-up log line that matches an error pattern
PLAIN_MARK = "   "
LOG_LINES = 25
EARLIER_ERRORS = 5
FAILED_TAIL_LINES = 20
STEP_LINES = 40
VERIFICATION_LINES = 30


ROLLBACK_ACTION = "upgrade_rollback"
RESUME_ACTION = "upgrade_resume"


def summary_blocks(report: RunReport) -> list[Block]:
    run, plan = report.run, report.run.plan
    blocks = [
        header(
            f"Run #{run.id}: {plan.product_title} {versions(plan.from_version, plan.to_version)}"
        ),
        section(f"{STATE_EMOJI[run.state]} *{phrase(report.outcome, 500)}*"),
        *manual_blocks(report),
        *report_blocks(report),
    ]
    if report.rollback_offered:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    button(
                        "Roll back…",
                        ROLLBACK_ACTION,
                        str(run.id),
                        confirm=confirm_dialog(
                            f"Ask to roll back run #{run.id}?",
                            "This posts a rollback plan that needs approval like an upgrade.",
                            "Ask",
                        ),
                    )
                ],
            }
        )
    return blocks


def interrupted_blocks(view: InterruptedView) -> list[Block]:
    """The news that a run was cut off, with what an approver may do: resume or roll back."""
    run = view.run
    choices = [
        button(
            "Roll back…",
            ROLLBACK_ACTION,
            str(run.id),
            style="danger",
            confirm=confirm_dialog(
                f"Roll back run #{run.id} now?",
                "Its rollback steps start at once. Check the instance first: the step left in "
                "doubt may or may not have run.",
                "Roll back",
            ),
        )
    ]
    if view.can_resume:
        choices.insert(
            0,
            button(
                "Resume…",
                RESUME_ACTION,
                str(run.id),
                confirm=confirm_dialog(
                    f"Resume run #{run.id}?",
                    "The step left in doubt runs again, then the rest of the plan. Check the "
                    "instance first: that step may or may not have run.",
                    "Resume",
                ),
            ),
        )
    forms = f"`/upgrade rollback {run.id}`, `/upgrade cancel {run.id}`"
    if view.can_resume:
        forms = f"`/upgrade resume {run.id}`, " + forms
    return [
        section(
            f"{STATE_EMOJI[RunState.INTERRUPTED]} *Run #{run.id} was interrupted:* "
            f"{phrase(escape(view.reason), 2000)}"
        ),
        section(
            "Nothing runs again until an approver decides. Check the instance, then choose "
            f"(or type {forms}):"
        ),
        {"type": "actions", "elements": choices},
    ]


def interrupted_text(view: InterruptedView) -> str:
    return f"Run #{view.run.id} was interrupted: {view.reason}"


def manual_blocks(report: RunReport) -> list[Block]:
    """After a rollback: what it could not undo; after a failed one, what is left by hand."""
    blocks: list[Block] = []
    if report.cannot_undo:
        kept = "\n".join(f"• {escape(title)}" for title in report.cannot_undo)
        blocks.append(
            section(
                passage(f":no_entry: *These steps ran and the rollback cannot undo them:*\n{kept}")
            )
        )
    if not report.manual_steps:
        return blocks
    lines = "\n".join(f"{n}. {escape(step)}" for n, step in enumerate(report.manual_steps, 1))
    return [
        section(
            passage(
                ":rotating_light: *The rollback did not finish. Left to do by hand, "
                f"in this order:*\n{lines}"
            )
        )
    ]


def report_blocks(report: RunReport) -> list[Block]:
    """Facts, backup, failure, start-up log, verifications and durations of a run."""
    run, plan = report.run, report.run.plan
    blocks = [
        fields(
            [
                ("Product", phrase(plan.product_title, 300)),
                ("Instance", f"{phrase(plan.instance_key, 300)} ({phrase(plan.address, 300)})"),
                ("Versions", phrase(versions(plan.from_version, plan.to_version), 300)),
                ("Strategy", phrase(plan.strategy, 300)),
                ("Requested by", mention(run.requested_by)),
                ("Took", duration(_took(report.steps))),
            ]
        ),
    ]
    if report.backup_path:
        blocks.append(section(f":floppy_disk: *Backup:* {inline_code(report.backup_path, 1000)}"))
    elif report.steps:
        blocks.append(section(":warning: *No backup was taken.*"))
    if report.failed_step is not None:
        blocks += failure_blocks(report, report.failed_step)
    if report.startup_log is not None:
        blocks += startup_log_blocks(report.startup_log, report.error_patterns)
    if report.verifications:
        checked = report.verifications
        if len(checked) > VERIFICATION_LINES:  # keep the failures when some must be left out
            checked = tuple(sorted(checked, key=lambda c: c.result.passed))[:VERIFICATION_LINES]
        checks = [
            f"{verdict(c.result.passed)} {phrase(c.result.description, 300)}: "
            f"{phrase(c.result.evidence, 500)}"
            f"{' _(rollback)_' if c.phase is Phase.ROLLBACK else ''}"
            for c in checked
        ]
        blocks += line_sections(
            checks,
            budget=2000,
            noun="verification",
            title="*Verifications*",
            total=len(report.verifications),
        )
    if report.steps:
        blocks.append(divider())
        durations = [
            f"{RESULT_EMOJI[s.status]} {step_number(s.phase, s.number)}. "
            f"{phrase(s.title)} — {duration(s.duration)}"
            for s in report.steps[:STEP_LINES]
        ]
        blocks += line_sections(
            durations, budget=2500, noun="step", title="*Steps*", total=len(report.steps)
        )
    blocks.append(
        context(f"Plan {inline_code(plan.digest)} · last change {slack_date(run.updated_at)}")
    )
    return blocks


def _took(steps: Sequence[StepResult]) -> float | None:
    ends = [s.finished_at for s in steps if s.finished_at is not None]
    if not steps or not ends:
        return None
    return (max(ends) - min(s.started_at for s in steps)).total_seconds()


def failure_blocks(report: RunReport, failed: StepResult) -> list[Block]:
    blocks = [
        section(
            f":x: {step_headline(failed, markup=True)}\n"
            f"{phrase(failed.title)}" + (f"\n{passage(failed.error, 800)}" if failed.error else "")
        )
    ]
    blocks += output_blocks(failed, FAILED_TAIL_LINES, caption="Output tail")
    hint = _rollback_hint(report)
    if hint:
        blocks.append(section(hint))
    return blocks


def _rollback_hint(report: RunReport) -> str:
    plan, state = report.run.plan, report.run.state
    if state is not RunState.FAILED:
        return ""  # rolled back, or the outcome sentence already says what happened
    if not plan.rollback:
        return ":leftwards_arrow_with_hook: This strategy has no rollback steps; restore by hand."
    if not report.rollback_offered:
        return (
            ":information_source: Not rolled back: the failure came before any step that changes "
            "a host, so nothing was changed."
        )
    return (
        ":leftwards_arrow_with_hook: Roll back with the button or "
        f"`/upgrade rollback {report.run.id}`: the rollback plan needs a new approval."
    )


def startup_log_blocks(log: Output, patterns: Sequence[str]) -> list[Block]:
    lines = log.text.splitlines()
    errors = error_lines(lines, patterns)
    wanted = lines[-LOG_LINES:]
    first = len(lines) - len(wanted)
    marks = set(errors)
    marked = [
        (ERROR_MARK if first + i in marks else PLAIN_MARK) + line for i, line in enumerate(wanted)
    ]
    excerpt = code_block(marked, limit=2600)
    shown_from = len(lines) - excerpt.shown
    note = (
        f"{count(len(errors), 'error line')}, marked `{ERROR_MARK.strip()}`"
        if errors
        else "no error lines"
    )
    blocks = [
        section(
            f"*Start-up log* (last {min(excerpt.shown, log.total_lines)} of "
            f"{count(log.total_lines, 'line')}; {note})\n"
            f"{excerpt.text}"
        )
    ]
    earlier = [i for i in errors if i < shown_from]
    if earlier:
        lines_before = [ERROR_MARK + lines[i] for i in earlier[:EARLIER_ERRORS]]
        early = code_block(lines_before, limit=1500, from_end=False)
        blocks.append(
            section(
                f"*Error lines before the excerpt* (first {early.shown} of {len(earlier)})\n"
                f"{early.text}"
            )
        )
    return blocks


def summary_text(view: SummaryView) -> str:
    report = view.report
    backup = f" Backup: {report.backup_path}" if report.backup_path else ""
    return f"Run #{report.run.id} {run_title(report.run)}: {report.outcome}.{backup}"
