"""The fault matrix's results file, `var/fault-matrix.json`, written case by case as they run.

Entries are keyed by scenario and case, so a partial run (one strategy, one case) updates its own
entries and keeps the others. Several pytest processes may write at once: a lock file serialises
them. `docs/fault-matrix.md` is generated from this file by `python -m tests.faults.table`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.faults.matrix import SCENARIOS, Case, NotApplicable, Scenario
from tests.hostkit.services import ROOT

RESULTS = ROOT / "var" / "fault-matrix.json"

SESSION: list[CaseRecord] = []  # this process's cases, for the terminal summary


@dataclass(kw_only=True)
class CaseRecord:
    """One case as it ran: what was injected, what the rule expected, what happened."""

    scenario: str
    strategy: str
    order: list[int]  # scenario, then case: the matrix's order, for the table
    step: str
    fault: str
    lasting: bool
    target: str
    injected: bool
    injection: str
    expected: str
    shows_at: str | None
    got: str
    failed_step: str | None
    failure: str  # the first failed step's error, as the bot reported it
    outcome: str
    manual_steps: list[str]  # after a failed rollback: what the report leaves to do by hand
    rollback_offered: bool  # whether the report offers a rollback (`/upgrade rollback`)
    seconds: float
    reset_seconds: float
    traffic: str = ""  # zero-downtime: what the poller of the proxy saw
    problems: list[str] = field(default_factory=list)  # how the promise was broken
    remarks: list[str] = field(default_factory=list)  # what the report says wrongly all the same
    failures: list[str] = field(default_factory=list)  # every failed step: error, output tail
    steps: list[str] = field(default_factory=list)  # `phase:step:status` in the order run
    finished_at: str = ""

    @property
    def kept(self) -> bool:
        """The run ended as the promise says."""
        return not self.problems

    @property
    def passed(self) -> bool:
        """The promise kept, and the report right about why the step failed."""
        return self.kept and not self.remarks


def scenario_order(scenario: Scenario) -> int:
    return list(SCENARIOS).index(scenario.strategy)


def key(scenario: Scenario, step: str, fault: str, lasting: bool = False) -> str:
    return f"{scenario.name} / {step} / {fault}" + (" / lasting" if lasting else "")


@contextmanager
def _results() -> Iterator[dict[str, Any]]:
    """The results document, locked, saved on the way out."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.with_suffix(".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        document: dict[str, Any] = {"cases": {}, "not_applicable": {}}
        if RESULTS.exists():
            with contextlib.suppress(json.JSONDecodeError):  # cut short by a killed run
                document = json.loads(RESULTS.read_text())
        yield document
        document["updated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        temporary = RESULTS.with_suffix(".tmp")
        temporary.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
        temporary.replace(RESULTS)


def save(case: Case, record: CaseRecord) -> None:
    record.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
    SESSION.append(record)
    with _results() as document:
        document["cases"][key(case.scenario, case.step, case.fault, case.lasting)] = asdict(record)


def save_not_applicable(items: list[NotApplicable]) -> None:
    with _results() as document:
        for item in items:
            document["not_applicable"][key(item.scenario, item.step, item.fault)] = {
                "scenario": item.scenario.name,
                "order": [scenario_order(item.scenario), item.order],
                "step": item.step,
                "fault": str(item.fault),
                "reason": item.reason,
            }


def load(path: Path = RESULTS) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document
