"""How many device-days the driver rolls up, and in how much memory (benchmark only, by hand).

    .venv/bin/python -m tests.bench.driver_bound --postgres-dir DIR --database DB --schema SCHEMA \\
        [--factors 1 4]

Reads the partials and episodes a run kept as its state (batch/analysis/state.py) in DB.SCHEMA of
the local server in DIR (e.g. the nightly benchmark's: tests/bench/nightly.py), then, for each
factor k, in a fresh process: the state repeated k times under other device and classroom names
(k times the devices over the same days), and every published table rolled up from it in the
driver as a run does (the validation counts, the statistics, compliance and health tables), timed,
with the process' peak resident memory. Peak memory over device-days, at two sizes, is the bound
in docs/incremental.md ("Scale").
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import pyarrow as pa
import pyarrow.compute as pc

from batch.core.contract import CLASSROOM, DEVICE


def _repeated(table: pa.Table, factor: int) -> pa.Table:
    copies = []
    for copy in range(factor):
        renamed = table
        for name in (DEVICE, CLASSROOM):
            index = renamed.schema.get_field_index(name)
            renamed = renamed.set_column(index, name, pc.binary_join_element_wise(
                renamed[name], pa.scalar(f"~{copy}"), ""))
        copies.append(renamed)
    return pa.concat_tables(copies)


def _measure(args: argparse.Namespace, factor: int) -> dict[str, float]:
    from devtools import local_postgres
    from batch.analysis.job import ANALYSIS_OPTIONS, AnalysisSettings, _results
    from batch.analysis.rollup import validation_counts
    from batch.analysis.state import EPISODES, PARTIALS, read_device_days
    from batch.core.config import resolve_options, settings_from
    from batch.core.contract import METRICS
    from batch.core.session import arrow_to_pandas

    server = local_postgres.start(Path(args.postgres_dir))
    conn = psycopg2.connect(host=server.host, port=server.port, dbname=args.database, user=server.user,
                            password=server.password())
    with conn.cursor() as cursor:
        partials = _repeated(read_device_days(cursor, args.schema, PARTIALS), factor)
        episodes = _repeated(read_device_days(cursor, args.schema, EPISODES), factor)
    conn.close()
    settings = settings_from(AnalysisSettings, resolve_options(ANALYSIS_OPTIONS, {}, {
        "RAW_DATA_PATH": "/unused", "POSTGRES_PASSWORD": "unused", "BATCH_TIMEZONE": args.timezone}, None))
    rules = settings.iaq.rules()
    started = time.perf_counter()
    partials_df, episodes_df = arrow_to_pandas(partials), arrow_to_pandas(episodes)
    validation_counts(partials_df, METRICS)
    rows = {name: len(frame) for computed in _results(partials_df, episodes_df, settings, METRICS, rules)
            for name, frame in computed.items()}
    return {"factor": factor, "device_days": partials.num_rows, "seconds": time.perf_counter() - started,
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "state_mib": (partials.nbytes + episodes.nbytes) / 2**20, "published_rows": sum(rows.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres-dir", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--timezone", default="Europe/Rome")
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(_measure(args, args.child)))
        return
    results = []
    for factor in args.factors:
        child = subprocess.run([sys.executable, "-m", "tests.bench.driver_bound", *sys.argv[1:], "--child",
                                str(factor)], check=True, capture_output=True, text=True)
        results.append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(results[-1], flush=True)
    print("| device-days | state in Arrow, MiB | roll-up, s | peak driver memory, MiB | MiB per 100k device-days |")
    print("|---|---|---|---|---|")
    for result in results:
        print(f"| {result['device_days']:,} | {result['state_mib']:.0f} | {result['seconds']:.1f} | "
              f"{result['peak_mib']:.0f} | {result['peak_mib'] / result['device_days'] * 1e5:.0f} |")
    if len(results) > 1:
        low, high = results[0], results[-1]
        slope = (high["peak_mib"] - low["peak_mib"]) / (high["device_days"] - low["device_days"])
        print(f"marginal memory: {slope * 1e5:.0f} MiB per 100k device-days; "
              f"a 4 GiB driver rolls up about {(4096 - (low['peak_mib'] - slope * low['device_days'])) / slope:,.0f}"
              " device-days")


if __name__ == "__main__":
    main()
