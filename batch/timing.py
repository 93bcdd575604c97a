"""Wall time per phase of a job, for its summary and run record."""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def timed_phase(phase_seconds: dict[str, float], name: str) -> Iterator[None]:
    """Record in `phase_seconds[name]` how long the block took, even when it fails."""
    started = time.monotonic()
    try:
        yield
    finally:
        phase_seconds[name] = round(time.monotonic() - started, 3)
