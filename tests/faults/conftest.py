"""Fixtures of the fault matrix: one rig of real hosts per test module (one strategy each), and a
summary of the cases' durations at the end of the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.matrix import NotApplicable, cases
from tests.faults.record import RESULTS, SESSION, save_not_applicable
from tests.faults.rig import Rig
from tests.hostkit.services import Services


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fault_matrix: a case of the fault matrix (deselect with -m 'not fault_matrix')"
    )


@pytest.fixture(scope="module")
def rig(request: pytest.FixtureRequest, services: Services, myst_images: str) -> Iterator[Rig]:
    """The hosts of the module's `SCENARIO`, at the baseline; removed after the module."""
    scenario = request.module.SCENARIO
    save_not_applicable([c for c in cases(scenario) if isinstance(c, NotApplicable)])
    built = Rig(scenario, services, myst_images)
    try:
        yield built
    finally:
        built.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not SESSION:
        return
    write = terminalreporter.write_line
    terminalreporter.section("fault matrix")
    for record in SESSION:
        mark = "kept" if record.passed else "BROKEN" if not record.kept else "REPORT"
        write(
            f"{record.seconds:6.1f}s +{record.reset_seconds:4.1f}s reset  {mark:6}  "
            f"{record.scenario} / {record.step} / {record.fault}"
            f"{' (lasting)' if record.lasting else ''}: {record.got}"
        )
    ran = sum(r.seconds for r in SESSION)
    reset = sum(r.reset_seconds for r in SESSION)
    broken = sum(not r.kept for r in SESSION)
    wrong = sum(r.kept and not r.passed for r in SESSION)
    write(
        f"{len(SESSION)} cases, {broken} broke the promise, {wrong} more had a wrong report; "
        f"{ran:.0f}s running and "
        f"{reset:.0f}s resetting. Results: {RESULTS}; table: python -m tests.faults.table"
    )
