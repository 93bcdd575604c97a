"""The performance benchmark, run by hand (never in CI).

    tests/bench/run.sh --rows 100000 1000000 5000000 --repeats 3 --scaling 5000000 20000000

(tests/bench/run.sh sets up the virtualenv and the JDBC driver, then runs this module.)

On each input shape (tests/bench/shapes.py: the demo's, 104 devices x 365 days in time order,
and `many_days`, 1,000 devices over two school years, unsorted within each file) and size,
alternating shapes, sizes and variants in each repetition:

1. `analysis`: this package's job as a user runs it (start-spark.sh --foreground, local[2],
   publishing every table to a real local PostgreSQL);
2. `seed`: the straightforward implementation (tests/bench/seed_reference.py);
3. `floor`: one scan, one groupBy, one sum per metric (tests/bench/spark_floor.py);
4. `duckdb`: DuckDB computing the same statistics (tests/bench/duckdb_reference.py);
5. the downloader against the naive export (tests/bench/bench_export.py), unless
   --skip-export.

Prints every run with the load averages at its start and end, then per shape and size the
medians, peak memory and the targets of issue 14 as ratios (analysis / floor, seed /
analysis, publish share of the analysis' wall time); then the analysis alone at each
--scaling size, alternating: time per million readings and peak memory (the process tree,
and the Python driver alone).
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
from tests.bench.measure import ensure_input, run_sampled
from tests.bench.shapes import SHAPES, ensure_many_days

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
    shape: str
    rows: int
    seconds: float
    peak_mib: float
    python_peak_mib: float
    load: str
    detail: dict[str, object]


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as `uptime` prints them: every figure carries it."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def uniform_copy(source: Path) -> Path:
    """The dataset with every file cast to one schema (the newest file's, widened to double)."""
    target = source.with_name(source.name + "-uniform")
    if (target / "_DONE").exists():
        return target
    target.mkdir(exist_ok=True)
    files = sorted(source.glob("*.parquet"))
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


def measure(variant: str, shape: str, rows: int, command: list[str], env: dict[str, str],
            log_dir: Path, summary_json: Path | None = None) -> Measurement:
    log_path = log_dir / f"{variant}-{shape}-{rows}-{time.strftime('%H%M%S')}.log"
    load = load_average()
    seconds, _, sampler = run_sampled(variant, command, env, log_path)
    detail: dict[str, object] = {}
    if summary_json is not None:
        summary = json.loads(summary_json.read_text())
        detail = {"phases": summary["phase_seconds"]}
    result = Measurement(variant, shape, rows, round(seconds, 2),
                         round(sampler.peak_tree_kib / 1024, 1),
                         round(sampler.peak_python_kib / 1024, 1), load, detail)
    print(f"  {variant:<9} {shape:<9} {rows:>11,} rows {result.seconds:8.2f} s  "
          f"peak {result.peak_mib:7.1f} MiB (python {result.python_peak_mib:6.1f})  "
          f"load {load} -> {load_average()} {json.dumps(detail) if detail else ''}", flush=True)
    return result


def variants(raw: Path, server: local_postgres.LocalPostgres, work: Path,
             before: Path | None = None) -> dict[str, tuple[list[str], dict[str, str], Path | None]]:
    """Each variant's command, environment and summary file; `before`: another checkout's analysis."""
    env = _spark_env()
    summary = work / "analysis-summary.json"
    analysis_env = {**env, "RAW_DATA_PATH": str(raw), "SPARK_MASTER": MASTER,
                    **server.environment(), "POSTGRES_PASSWORD": "", "POSTGRES_SCHEMA": "bench",
                    "SUMMARY_JSON": str(summary), "LOG_DIR": str(work / "logs"),
                    "RUN_DIR": str(work / "run"), "BATCH_TIMEZONE": "Europe/Rome"}
    # The other checkout publishes to its own schema: its tables may be shaped differently.
    before_variant = {} if before is None else {"before": (
        [str(before / "start-spark.sh"), "--foreground"],
        {**analysis_env, "PYTHONPATH": str(before), "POSTGRES_SCHEMA": "bench_before"}, summary)}
    seed_env = {**env, "BENCH_POSTGRES_PASSWORD": server.password()}
    url = f"jdbc:postgresql://{server.host}:{server.port}/{server.database}"
    return {
        "analysis": ([str(PROJECT_ROOT / "start-spark.sh"), "--foreground"], analysis_env, summary),
        "seed": (_submit(BENCH / "seed_reference.py", str(raw), url, server.user, "public", jars=True),
                 seed_env, None),
        "floor": (_submit(BENCH / "spark_floor.py", str(raw)), env, None),
        "duckdb": ([sys.executable, str(BENCH / "duckdb_reference.py"), str(raw), "Europe/Rome"],
                   env, None),
        **before_variant,
    }


def _median(results: list[Measurement], variant: str) -> float | None:
    seconds = [m.seconds for m in results if m.variant == variant]
    return statistics.median(seconds) if seconds else None


def report(results: list[Measurement], shape: str, rows: int) -> None:
    """The targets of issue 14 at one shape and size, from alternating runs of one invocation."""
    mine = [m for m in results if m.shape == shape and m.rows == rows]
    loads = sorted({m.load for m in mine})
    print(f"\n{shape}, {rows:,} readings (load averages seen at the starts: {', '.join(loads)})")
    print("variant     median s   peak MiB   analysis / variant")
    analysis = _median(mine, "analysis")
    for variant in dict.fromkeys(m.variant for m in mine):
        seconds = _median(mine, variant)
        peak = max(m.peak_mib for m in mine if m.variant == variant)
        ratio = f"{analysis / seconds:8.2f}" if analysis and seconds else ""
        print(f"{variant:<10} {seconds:9.2f} {peak:10.1f}   {ratio}")
    if analysis is None:
        return
    floor, seed, before = _median(mine, "floor"), _median(mine, "seed"), _median(mine, "before")
    if before:
        print(f"before / analysis = {before / analysis:.2f}x (before: {before / floor:.2f}x the floor)"
              if floor else f"before / analysis = {before / analysis:.2f}x")
    if floor:
        print(f"analysis / floor = {analysis / floor:.2f}x (target <= 1.5)")
    if seed:
        print(f"seed / analysis = {seed / analysis:.2f}x (target >= 2 at 5M)")
    runs = [m for m in mine if m.variant == "analysis"]
    shares = [m.detail["phases"]["publish"] / m.seconds for m in runs]  # type: ignore[index]
    print(f"publish share of the analysis' wall time: {statistics.median(shares):.1%} (target < 10%)")
    phases = {name: statistics.median(m.detail["phases"][name] for m in runs)  # type: ignore[index]
              for name in runs[0].detail["phases"]}  # type: ignore[union-attr]
    print("analysis phases (medians, s): " + ", ".join(f"{k} {v:.2f}" for k, v in phases.items()))


def report_scaling(results: list[Measurement]) -> None:
    """Growth of the time per million readings and of peak memory, largest input against the rest."""
    for shape, variant in dict.fromkeys((m.shape, m.variant) for m in results):
        mine = [m for m in results if m.shape == shape and m.variant == variant]
        sizes = sorted({m.rows for m in mine})
        median = {rows: statistics.median(m.seconds for m in mine if m.rows == rows) for rows in sizes}
        peak = {rows: max(m.peak_mib for m in mine if m.rows == rows) for rows in sizes}
        python = {rows: max(m.python_peak_mib for m in mine if m.rows == rows) for rows in sizes}
        largest = sizes[-1]
        for rows in sizes[:-1]:
            growth = (median[largest] / largest) / (median[rows] / rows)
            print(f"{variant} {shape}: {rows:,} -> {largest:,} readings: {median[rows] / rows * 1e6:.2f} -> "
                  f"{median[largest] / largest * 1e6:.2f} s per million, x{growth:.2f} (target <= 1); "
                  f"peak memory of the tree {peak[rows]:.0f} -> {peak[largest]:.0f} MiB "
                  f"(x{peak[largest] / peak[rows]:.2f}), of the Python driver {python[rows]:.0f} -> "
                  f"{python[largest]:.0f} MiB")


def ensure_shape(work: Path, shape: str, rows: int) -> Path:
    if shape == "demo":
        return uniform_copy(ensure_input(work, rows))
    return ensure_many_days(work, rows)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tests/bench/run.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000, 5_000_000])
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scaling", type=int, nargs="*", default=[5_000_000, 20_000_000],
                        help="sizes of the analysis-alone scaling runs (alternating, --repeats each)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "indoor-air-bench")
    parser.add_argument("--only", nargs="*", help="variants to run (default: all)")
    parser.add_argument("--skip-export", action="store_true")
    parser.add_argument("--before", type=Path,
                        help="another checkout (e.g. `git worktree add` of an older commit) whose "
                             "analysis runs as variant `before`, alternating with this one")
    args = parser.parse_args(argv)
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    server = local_postgres.start(work / "postgres", ephemeral=True)
    try:
        raws = {(shape, rows): ensure_shape(work, shape, rows)
                for rows in args.rows for shape in args.shapes}
        chosen = args.only or ["analysis", "seed", "floor", "duckdb"]
        if args.before is not None and "before" not in chosen:
            chosen.insert(1, "before")
        results = []
        for repeat in range(args.repeats):
            print(f"repetition {repeat + 1}/{args.repeats}", flush=True)
            # Alternating shapes, sizes and variants: the machine's drift spreads over all.
            for (shape, rows), raw in raws.items():
                plan = variants(raw, server, work, args.before)
                for variant in chosen:
                    command, env, summary = plan[variant]
                    results.append(measure(variant, shape, rows, command, env, work, summary))
        for shape, rows in raws:
            report(results, shape, rows)
        if not args.skip_export:
            for rows in args.rows:
                subprocess.run([sys.executable, "-m", "tests.bench.bench_export", "--rows", str(rows),
                                "--repeats", str(args.repeats), "--workdir", str(work)],
                               check=True, cwd=PROJECT_ROOT)
        if args.scaling:
            print("\nanalysis scaling", flush=True)
            scaled = {(shape, rows): ensure_shape(work, shape, rows)
                      for rows in args.scaling for shape in args.shapes if rows not in args.rows}
            scaling = []
            for repeat in range(args.repeats):
                for (shape, rows), raw in scaled.items():
                    plan = variants(raw, server, work, args.before)
                    for variant in [v for v in ("analysis", "before") if v in plan]:
                        command, env, summary = plan[variant]
                        scaling.append(measure(variant, shape, rows, command, env, work, summary))
            # The main runs count too: growth is reported from each smaller size to the largest.
            report_scaling(scaling + [m for m in results if m.variant in ("analysis", "before")])
    finally:
        local_postgres.stop(work / "postgres")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
