"""The performance benchmark, run by hand (never in CI).

    tests/bench/run.sh --rows 5000000 --repeats 3 --scaling 1000000 5000000 20000000

(tests/bench/run.sh sets up the virtualenv and the JDBC driver, then runs this module.)

On one generated dataset (devtools.demo; rewritten once with one type per column, because
the seed-style reference and the floor read with Spark's plain schema merge, which refuses
drifting types), alternating the variants in each repetition:

1. `analysis`: this package's job as a user runs it (start-spark.sh --foreground, local[2],
   publishing every table to a real local PostgreSQL);
2. `seed`: the straightforward implementation (tests/bench/seed_reference.py);
3. `floor`: one scan, one groupBy, one sum per metric (tests/bench/spark_floor.py);
4. `duckdb`: DuckDB computing the same statistics (tests/bench/duckdb_reference.py);
5. the downloader against the naive single-file write and the floor of any download
   (tests/bench/bench_download.py), unless
   --skip-export.

Prints the median wall time, the peak RSS of the whole process tree, and the ratios; then
the analysis alone at each --scaling size with its time per million readings and the
publish share of its wall time (from the job's own summary).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from devtools import local_postgres
from devtools.demo import read_demo_dataset_info
from tests.bench.measure import ensure_input, run_sampled

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BENCH = Path(__file__).resolve().parent
MASTER = "local[2]"
# Set by tests/bench/run.sh, which fetches the jar when missing.
JDBC_JAR = Path(os.environ.get(
    "POSTGRES_JDBC_JAR",
    Path.home() / ".m2/repository/org/postgresql/postgresql/42.7.4/postgresql-42.7.4.jar"))


@dataclass(frozen=True)
class Measurement:
    variant: str
    rows: int
    seconds: float
    peak_mib: float
    detail: dict[str, object]


def uniform_copy(source: Path) -> Path:
    """The dataset with every file cast to one schema (the newest file's, widened to double)."""
    target = source.with_name(source.name + "-uniform")
    if (target / "_DONE").exists():
        return target
    target.mkdir(exist_ok=True)
    # The demo is a streaming sink: its committed files only, not the aborted attempt's orphan.
    info = read_demo_dataset_info(source)
    assert info is not None, f"{source} is not a demo dataset"
    files = sorted(source / name for name in info.files)
    newest = pq.read_schema(files[-1])
    schema = pa.schema([pa.field(f.name, pa.float64() if pa.types.is_floating(f.type)
                                 or pa.types.is_decimal(f.type) else f.type) for f in newest])
    for file in files:
        table = pq.read_table(file)
        columns = [table[f.name].cast(f.type) if f.name in table.column_names
                   else pa.nulls(table.num_rows, f.type) for f in schema]
        pq.write_table(pa.Table.from_arrays(columns, schema=schema), target / file.name)
    (target / "_DONE").write_text("")
    return target


def _spark_env() -> dict[str, str]:
    import pyspark

    return {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_HOME": str(Path(pyspark.__file__).parent), "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable}


def _submit(script: Path, *args: str, jars: bool = False) -> list[str]:
    command = [str(PROJECT_ROOT / ".venv/bin/spark-submit"), "--master", MASTER,
               "--driver-memory", "2g", "--conf", "spark.ui.showConsoleProgress=false",
               "--conf", "spark.driver.extraJavaOptions=-Duser.timezone=UTC "
                         f"-Dlog4j2.configurationFile=file:{PROJECT_ROOT}/env/log4j2.properties"]
    if jars:
        command += ["--jars", str(JDBC_JAR)]
    return command + [str(script), *args]


def measure(variant: str, rows: int, command: list[str], env: dict[str, str], log_dir: Path,
            summary_json: Path | None = None) -> Measurement:
    log_path = log_dir / f"{variant}-{rows}-{time.strftime('%H%M%S')}.log"
    seconds, _, sampler = run_sampled(variant, command, env, log_path)
    detail: dict[str, object] = {}
    if summary_json is not None:
        summary = json.loads(summary_json.read_text())
        detail = {"phases": summary["phase_seconds"]}
    result = Measurement(variant, rows, round(seconds, 2), round(sampler.peak_tree_kib / 1024, 1),
                         detail)
    print(f"  {variant:<9} {rows:>11,} rows {result.seconds:8.2f} s  peak {result.peak_mib:8.1f} MiB "
          f"{json.dumps(detail) if detail else ''}", flush=True)
    return result


def variants(raw: Path, server: local_postgres.LocalPostgres, work: Path) -> dict[str, tuple[list[str], dict[str, str], Path | None]]:
    env = _spark_env()
    summary = work / "analysis-summary.json"
    analysis_env = {**env, "RAW_DATA_PATH": str(raw), "SPARK_MASTER": MASTER,
                    **server.environment(), "POSTGRES_PASSWORD": "", "POSTGRES_SCHEMA": "bench",
                    "SUMMARY_JSON": str(summary), "LOG_DIR": str(work / "logs"),
                    "RUN_DIR": str(work / "run"), "BATCH_TIMEZONE": "Europe/Rome"}
    seed_env = {**env, "BENCH_POSTGRES_PASSWORD": server.password()}
    url = f"jdbc:postgresql://{server.host}:{server.port}/{server.database}"
    return {
        "analysis": ([str(PROJECT_ROOT / "start-spark.sh"), "--foreground"], analysis_env, summary),
        "seed": (_submit(BENCH / "seed_reference.py", str(raw), url, server.user, "public", jars=True),
                 seed_env, None),
        "floor": (_submit(BENCH / "spark_floor.py", str(raw)), env, None),
        "duckdb": ([sys.executable, str(BENCH / "duckdb_reference.py"), str(raw), "Europe/Rome"],
                   env, None),
    }


def report(results: list[Measurement]) -> None:
    by_variant: dict[str, list[Measurement]] = {}
    for result in results:
        by_variant.setdefault(result.variant, []).append(result)
    medians = {v: statistics.median(m.seconds for m in ms) for v, ms in by_variant.items()}
    peaks = {v: max(m.peak_mib for m in ms) for v, ms in by_variant.items()}
    analysis = medians["analysis"]
    print("\nvariant     median s   peak MiB   analysis / variant")
    for variant, seconds in medians.items():
        print(f"{variant:<10} {seconds:9.2f} {peaks[variant]:10.1f}   {analysis / seconds:8.2f}")
    print(f"\nseed / analysis = {medians['seed'] / analysis:.2f}x (target >= 2)")
    print(f"analysis / floor = {analysis / medians['floor']:.2f}x (target <= 1.5)")
    phases = [m.detail["phases"] for m in by_variant["analysis"]]
    publish = statistics.median(p["publish"] / sum(p.values()) for p in phases)  # type: ignore[union-attr]
    print(f"publish share of the job's phases: {publish:.1%} (target < 10%)")


def report_scaling(results: list[Measurement]) -> None:
    """Growth of the time per million readings and of peak memory, largest input against the rest."""
    largest = max(results, key=lambda m: m.rows)
    for smaller in results:
        if smaller.rows < largest.rows:
            growth = (largest.seconds / largest.rows) / (smaller.seconds / smaller.rows)
            print(f"{smaller.rows:,} -> {largest.rows:,} readings: time per million x{growth:.2f} "
                  f"(target <= 1.2), peak memory x{largest.peak_mib / smaller.peak_mib:.2f}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tests/bench/run.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scaling", type=int, nargs="*", default=[1_000_000, 5_000_000, 20_000_000])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "indoor-air-bench")
    parser.add_argument("--only", nargs="*", help="variants to run (default: all)")
    parser.add_argument("--skip-export", action="store_true")
    args = parser.parse_args(argv)
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    server = local_postgres.start(work / "postgres", ephemeral=True)
    try:
        raw = uniform_copy(ensure_input(work, args.rows))
        plan = variants(raw, server, work)
        chosen = args.only or list(plan)
        results = []
        for repeat in range(args.repeats):
            print(f"repetition {repeat + 1}/{args.repeats}", flush=True)
            for variant in chosen:
                command, env, summary = plan[variant]
                results.append(measure(variant, args.rows, command, env, work, summary))
        if {"analysis", "seed", "floor"} <= set(chosen):
            report(results)
        if not args.skip_export:
            subprocess.run([sys.executable, "-m", "tests.bench.bench_download", "--rows", str(args.rows),
                            "--repeats", str(args.repeats), "--workdir", str(work)],
                           check=True, cwd=PROJECT_ROOT)
        if args.scaling:
            print("\nanalysis scaling", flush=True)
            scaling = []
            for rows in args.scaling:
                scaled = uniform_copy(ensure_input(work, rows))
                command, env, summary = variants(scaled, server, work)["analysis"]
                scaling.append(measure("analysis", rows, command, env, work, summary))
                print(f"    {scaling[-1].seconds / (rows / 1e6):.2f} s per million readings", flush=True)
            report_scaling(scaling)
    finally:
        local_postgres.stop(work / "postgres")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
