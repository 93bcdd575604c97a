"""Phase timings (batch/core/timing.py): a phase entered twice is reported with both durations."""
from __future__ import annotations

import pytest

from batch.core import timing
from batch.core.timing import timed_phase


def test_a_phase_entered_twice_adds_both_durations_and_a_failing_block_counts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The clock reads, in order: start and end of each of the three blocks.
    readings = iter([10.0, 12.5, 20.0, 20.25, 30.0, 31.0])
    monkeypatch.setattr(timing.time, "monotonic", lambda: next(readings))
    phases: dict[str, float] = {}
    with timed_phase(phases, "aggregate"):
        pass
    with timed_phase(phases, "read"):
        pass
    with pytest.raises(RuntimeError), timed_phase(phases, "aggregate"):
        raise RuntimeError("the block failed")
    assert phases == {"aggregate": 3.5, "read": 0.25}
