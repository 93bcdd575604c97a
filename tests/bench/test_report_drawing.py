"""The report's layout cache and drawing pool, measured (issue 21): one invocation, the variants
alternating, medians. Run at the commit that adds it (the next one removes what it measures):

    BENCH_REPEATS=3 tests/run.sh -q -s tests/bench/test_report_drawing.py
"""
from __future__ import annotations

import datetime as dt
import os
import statistics
import time
from typing import Any

import pytest

from batch.report import charts, page, queries
from tests.test_report import conn, many_institutes, published, published_with_iaq, target  # noqa: F401

UTC = dt.timezone.utc
REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))


def _plain_savefig(figure: Any) -> None:
    """No _fix_layout: savefig lays the figure out at each of its draws."""


def _once_no_cache(figure: Any) -> None:
    engine = figure.get_layout_engine()
    if engine is None:
        return
    engine.execute(figure)
    figure.set_layout_engine(None)


def test_bench(conn: Any, published_with_iaq: str, monkeypatch: pytest.MonkeyPatch) -> None:
    base = queries.read_report_data(conn, published_with_iaq, None)
    original_fix = charts._fix_layout
    original_processes = page._drawing_processes
    layouts = {"cache": original_fix, "once, no cache": _once_no_cache, "savefig's own": _plain_savefig}
    for size, data in (("2 institutes (fixture)", base), ("50 institutes (fixture x25)", many_institutes(base, 25))):
        variants: dict[str, Any] = {}
        for name, fix in layouts.items():
            variants[f"layout {name}, serial"] = (fix, lambda sections: 1)
        if size.startswith("50"):
            variants["layout cache, pool"] = (original_fix, original_processes)
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(REPEATS):
            for name, (fix, processes) in variants.items():  # alternating
                monkeypatch.setattr(charts, "_fix_layout", fix)
                monkeypatch.setattr(page, "_drawing_processes", processes)
                start = time.perf_counter()
                page.render_report(data, dt.datetime(2025, 4, 10, tzinfo=UTC))
                times[name].append(time.perf_counter() - start)
        for name, values in times.items():
            print(f"BENCH {size}: {name}: median {statistics.median(values):.3f} s "
                  f"(min {min(values):.3f}, max {max(values):.3f}, n={len(values)})")
    print("BENCH load", os.getloadavg(), "cores", len(os.sched_getaffinity(0)))
