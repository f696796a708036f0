"""sweep.results.status: the headline counts what ``--trials`` counts, against the target."""

from __future__ import annotations

import pytest

from sweep.records import STATES
from sweep.results.status import headline


@pytest.mark.parametrize(
    ("counts", "target", "expected"),
    [
        (
            {"complete": 3, "early-stopped": 1, "infeasible": 4, "failed": 1},
            4,
            "study kd: 4 of 4 finished (+4 over budget, 1 failed)",
        ),
        ({"complete": 2}, 8, "study kd: 2 of 8 finished"),
        (
            {"duplicate": 1, "running": 2},
            None,  # a study no `sweep run` set a target for
            "study kd: 0 finished (+1 duplicate, 2 running)",
        ),
    ],
)
def test_headline(counts: dict[str, int], target: int | None, expected: str) -> None:
    assert headline("kd", {state: counts.get(state, 0) for state in STATES}, target) == expected
