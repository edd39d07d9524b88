"""Small builders of domain records for tests: sensible defaults, any field overridable.

`make_plan()` gives a MyST Studio in-place plan whose steps use every action kind (shell with a
followed log, Docker, HTTP), captures and both verification kinds, so a store or a renderer that
round-trips it has seen every nested record type.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.domain.output import CommandResult, Output
from bot.domain.plan import Plan, PlannedStep
from bot.domain.run import Phase, StepResult, StepStatus, VerificationResult
from bot.domain.runbook import (
    Capture,
    CaptureEquals,
    DockerAction,
    DockerOperation,
    Follow,
    HttpAction,
    NoLinesMatching,
    ShellAction,
    Step,
    StepRole,
)

AT = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)  # a fixed "now" so records compare equal


def at(minutes: float = 0) -> datetime:
    """`AT` moved by some minutes: for ordering events and steps without a clock."""
    return AT + timedelta(minutes=minutes)


def make_step(step_id: str = "backup", **overrides: Any) -> Step:
    """A shell step by default; pass `action=` (or use the ones in `make_plan`) for the others."""
    fields: dict[str, Any] = {
        "id": step_id,
        "title": f"Run {step_id}",
        "action": ShellAction(command=f"/opt/myst-studio/bin/{step_id}.sh"),
        "timeout": 300.0,
    }
    fields.update(overrides)
    return Step(**fields)


def make_plan(**overrides: Any) -> Plan:
    """A plan for `nonprod/studio-1`, 3.9.0 -> 3.9.1; every field can be overridden by name."""
    steps = (
        make_step(
            "pull",
            title="Pull the new image",
            action=DockerAction(
                operation=DockerOperation.PULL,
                arguments={"image": "registry.example.com/myst-studio:3.9.1"},
            ),
        ),
        make_step(
            "backup",
            title="Back up the database",
            captures=(Capture(name="backup_path", pattern=r"Backed up to (?P<backup_path>\S+)"),),
        ),
        make_step(
            "startup-log",
            title="Read the start-up log",
            action=ShellAction(
                command="/opt/myst-studio/bin/output-logs.sh",
                follow=Follow(until=r"MyST Studio \S+ started", max_lines=2000, max_seconds=300),
            ),
            timeout=360.0,
            destructive=True,
            role=StepRole.STARTUP_LOG,
            verifications=(
                NoLinesMatching(pattern=r"\b(ERROR|FATAL)\b", description="no errors at start-up"),
            ),
        ),
        make_step(
            "console",
            title="Check the console's version",
            action=HttpAction(url="http://studio-1.example.com/", expect_status=200),
            captures=(
                Capture(name="console_version", pattern=r"Version\s+(?P<console_version>\S+)"),
            ),
            verifications=(
                CaptureEquals(
                    capture="console_version",
                    expected="3.9.1",
                    description="the console shows the target version",
                ),
            ),
        ),
    )
    rollback = (
        make_step(
            "retag-previous",
            title="Point the local tag back at the previous image",
            action=DockerAction(
                operation=DockerOperation.TAG,
                arguments={"source": "myst-studio:3.9.0", "target": "myst-studio"},
            ),
        ),
        make_step("restore", title="Restore the database", destructive=True),
    )
    fields: dict[str, Any] = {
        "product": "myst-studio",
        "product_title": "MyST Studio",
        "environment": "nonprod",
        "instance": "studio-1",
        "address": "studio-1.example.com",
        "strategy": "in-place",
        "from_version": "3.9.0",
        "to_version": "3.9.1",
        "steps": tuple(
            PlannedStep(number=n, step=s, preview=f"{s.id} 3.9.1") for n, s in enumerate(steps, 1)
        ),
        "rollback": tuple(
            PlannedStep(number=n, step=s, preview=f"{s.id} <backup_path>")
            for n, s in enumerate(rollback, 1)
        ),
        "auto_rollback": True,
        "variables": {"home": "/opt/myst-studio", "version": "3.9.1", "container": "myst-studio"},
        "backup_capture": "backup_path",
        "backup_location": "/opt/myst-studio/backup/",
        "expected_outage": "2-5 minutes",
        "runbook_digest": "0f1e2d3c4b5a6978",
        "created_at": AT,
    }
    fields.update(overrides)
    return Plan(**fields)


def make_command_result(**overrides: Any) -> CommandResult:
    """`backup-database.sh` that printed its backup path and a warning, exit 0."""
    fields: dict[str, Any] = {
        "host": "studio-1.example.com",
        "command": "/opt/myst-studio/bin/backup-database.sh",
        "exit_code": 0,
        "stdout": Output(
            head="Dumping database\nBacked up to /opt/myst-studio/backup/myst-studio-1.sql\n",
            total_bytes=71,
            total_lines=2,
        ),
        "stderr": Output(head="warning: disk 81% full\n", total_bytes=23, total_lines=1),
        "started_at": AT,
        "duration": 12.5,
    }
    fields.update(overrides)
    return CommandResult(**fields)


def make_result(run_id: int = 1, step_id: str = "backup", **overrides: Any) -> StepResult:
    """A finished, successful step result with its output, a capture and a verification."""
    fields: dict[str, Any] = {
        "run_id": run_id,
        "phase": Phase.UPGRADE,
        "number": 2,
        "step_id": step_id,
        "title": "Back up the database",
        "status": StepStatus.SUCCEEDED,
        "started_at": AT,
        "finished_at": AT + timedelta(seconds=12.5),
        "result": make_command_result(),
        "captures": {"backup_path": "/opt/myst-studio/backup/myst-studio-1.sql"},
        "verifications": (
            VerificationResult(
                description="the backup file is not empty", passed=True, evidence="2.1 MB"
            ),
        ),
    }
    fields.update(overrides)
    return StepResult(**fields)


def started(result: StepResult) -> StepResult:
    """The same step as recorded when it began: no end, no output, nothing captured yet."""
    return replace(
        result,
        status=StepStatus.STARTED,
        finished_at=None,
        result=None,
        captures={},
        verifications=(),
    )
