"""Wall time per phase of a job, for its summary and run record."""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def timed_phase(phase_seconds: dict[str, float], name: str) -> Iterator[None]:
    """Add to `phase_seconds[name]` how long the block took, even when it fails.

    Added, not set: a phase may be entered more than once (the analysis' first pass and its
    roll-up are both "aggregate"; a read retried without a damaged file is "read" twice).
    """
    started = time.monotonic()
    try:
        yield
    finally:
        phase_seconds[name] = round(phase_seconds.get(name, 0.0) + time.monotonic() - started, 3)
