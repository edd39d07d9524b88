"""The fault matrix of the phased strategy, on real sshd, dockerd, registry."""

from __future__ import annotations

import pytest

from tests.faults.drive import explain, run_case
from tests.faults.matrix import SCENARIOS, Case, applicable
from tests.faults.rig import Rig

pytestmark = [pytest.mark.services, pytest.mark.fault_matrix]

SCENARIO = SCENARIOS["phased"]


@pytest.mark.parametrize("case", applicable(SCENARIO), ids=lambda case: case.id)
def test_phased(rig: Rig, case: Case) -> None:
    record = run_case(rig, case)
    assert record.passed, explain(record)
