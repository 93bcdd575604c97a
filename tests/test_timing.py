"""Phase timings (batch/timing.py): a phase entered twice is reported with both durations."""
from __future__ import annotations

import time

import pytest

from batch.timing import timed_phase


def test_a_phase_entered_twice_adds_both_durations_and_a_failing_block_counts() -> None:
    phases: dict[str, float] = {}
    started = time.monotonic()
    with timed_phase(phases, "aggregate"):
        time.sleep(0.05)
    with timed_phase(phases, "read"):
        pass
    with pytest.raises(RuntimeError), timed_phase(phases, "aggregate"):
        time.sleep(0.05)
        raise RuntimeError("the block failed")
    elapsed = time.monotonic() - started
    # Both aggregate blocks slept 0.05 s: their sum is at least 0.1 s and at most the whole.
    assert 0.1 <= phases["aggregate"] <= elapsed + 0.001
    assert set(phases) == {"aggregate", "read"}
