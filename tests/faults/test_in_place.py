"""The fault matrix of the in-place strategy, on real sshd, dockerd, registry."""

from __future__ import annotations

import pytest

from tests.faults.drive import explain, run_case
from tests.faults.matrix import SCENARIOS, Case, applicable
from tests.faults.rig import Rig

pytestmark = [pytest.mark.services, pytest.mark.fault_matrix]

SCENARIO = SCENARIOS["in-place"]


@pytest.mark.parametrize("case", applicable(SCENARIO), ids=lambda case: case.id)
def test_in_place(rig: Rig, case: Case) -> None:
    record = run_case(rig, case)
    assert record.passed, explain(record)
