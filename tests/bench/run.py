"""The performance benchmark, run by hand (never in CI).

    tests/bench/run.sh --rows 100000 1000000 5000000 --shapes demo many_days --repeats 3 \\
        --scaling 5000000 20000000 [--before REV] [--skip-download]

(tests/bench/run.sh sets up the virtualenv and the JDBC driver, then runs this module.)

On each input shape (tests/bench/shapes.py: `demo`, devtools.demo's 104 devices x 365 days in
time order, rewritten once with one type per column because the seed-style reference and the
floor read with Spark's plain schema merge, which refuses drifting types; `many_days`, 1,000
devices over two school years, unsorted within each file) and each --rows size, alternating
shapes, sizes and variants in each repetition (the variants' order reversed every other one):

1. `analysis`: this package's job as a user runs it (start-spark.sh --foreground, local[2],
   publishing every table to a real local PostgreSQL);
2. `before`: with --before REV, the same from that revision's files (`git archive` into the
   workdir, its own virtualenv, its own schema), to measure a change in one invocation;
3. `seed`: the straightforward implementation (tests/bench/seed_reference.py);
4. `floor`: one scan, one groupBy, one sum per metric (tests/bench/spark_floor.py);
5. `duckdb`: DuckDB computing the same statistics (tests/bench/duckdb_reference.py);
6. then the downloader against the naive single-file write and the floor of any download
   (tests/bench/bench_download.py, on the demo shape), unless --skip-download.

Prints every run with the load averages at its start and end, then per shape and size the
medians, peak memory and the targets of issue 14 as ratios (analysis / floor, seed / analysis,
publish share of the analysis' wall time from the job's SUMMARY_JSON phase_seconds), and a
table of the targets; then the analysis alone at each --scaling size not already measured,
alternating: time per million readings and peak memory (the process tree, and the PySpark
driver alone) from each smaller size to the largest.

`tests/bench/run.sh --nightly ...` runs issue 22's nightly scenario instead (tests/bench/nightly.py).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from pathlib import Path

import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq

from devtools import local_postgres
from devtools.demo import MARKER_FILE, read_demo_dataset_info
from devtools.dev_env import JDBC_DRIVER_JAR
from tests.bench.measure import ensure_input, extract_commit, run_sampled
from tests.bench.shapes import SHAPES, ensure_many_days

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BENCH = Path(__file__).resolve().parent
MASTER = "local[2]"
VARIANTS = ("analysis", "before", "seed", "floor", "duckdb")
JOBS = ("analysis", "before")  # this package's job, from this tree or from --before
# The seed-style reference's driver: set by tests/bench/run.sh, which fetches it when missing.
JDBC_JAR = Path(os.environ.get("POSTGRES_JDBC_JAR") or JDBC_DRIVER_JAR)

Plan = dict[str, tuple[list[str], dict[str, str], Path | None]]


@dataclass(frozen=True)
class Measurement:
    variant: str
    shape: str
    rows: int
    seconds: float
    cpu_seconds: float
    peak_mib: float
    driver_peak_mib: float
    load: str
    phases: dict[str, float]
    # The job's whole SUMMARY_JSON (issue 22's nightly scenario reads its mode and counts).
    summary: dict[str, Any] = field(default_factory=dict)


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as `uptime` prints them: every figure carries it."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def uniform_copy(source: Path) -> Path:
    """The dataset with every file cast to one schema (the newest file's, widened to double)."""
    target = source.with_name(source.name + "-uniform")
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
    # Which demo it was made from (generator version, readings, seed).
    (target / "_DONE").write_text((source / MARKER_FILE).read_text())
    return target


def ensure_shape(work: Path, shape: str, rows: int) -> Path:
    if shape == "many_days":
        return ensure_many_days(work, rows)
    uniform = work / f"raw-{rows}-uniform"
    if (uniform / "_DONE").exists():
        # Kept as made, even when devtools.demo's generator has changed since: the runs of
        # one input stay comparable, and a 20M demo is not made again. Delete it to refresh.
        print(f"input: {rows:,} readings at {uniform} (uniform copy of "
              f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime((uniform / '_DONE').stat().st_mtime))}"
              " UTC)", flush=True)
        return uniform
    return uniform_copy(ensure_input(work, rows))


def before_tree(revision: str, work: Path) -> Path:
    """`revision`'s files extracted once into the workdir (no worktree touched), its virtualenv
    made ready outside the timed runs."""
    tree = extract_commit(revision, work)
    print(f"before = {revision} at {tree}; preparing its virtualenv", flush=True)
    # Its launcher makes the virtualenv before anything else, --help included.
    helped = subprocess.run([str(tree / "start-spark.sh"), "--help"], env=_before_env(tree),
                            stdout=subprocess.DEVNULL)
    if helped.returncode != 0:
        print(f"warning: {tree}/start-spark.sh --help exited with {helped.returncode}", flush=True)
    return tree


def _before_env(tree: Path) -> dict[str, str]:
    # Its own virtualenv: an editable install of another tree would change this one's. An
    # earlier commit's analysis may write through Spark's JDBC writer: its launcher passes
    # POSTGRES_JDBC_JAR to spark-submit.
    return {**os.environ, "PYTHONPATH": str(tree), "VENV_DIR": str(tree / ".venv"),
            "POSTGRES_JDBC_JAR": str(JDBC_JAR)}


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


def summary_path(work: Path) -> Path:
    """Where the job under measure writes its SUMMARY_JSON (read by `measure`)."""
    return work / "analysis-summary.json"


def analysis_environment(raw: Path, server: local_postgres.LocalPostgres, work: Path,
                         schema: str) -> dict[str, str]:
    """The environment of this package's job on `raw`, publishing to `schema` on `server`."""
    return {**_spark_env(), "RAW_DATA_PATH": str(raw), "SPARK_MASTER": MASTER,
            **server.environment(), "POSTGRES_PASSWORD": "", "POSTGRES_SCHEMA": schema,
            "SUMMARY_JSON": str(summary_path(work)), "LOG_DIR": str(work / "logs"),
            "RUN_DIR": str(work / "run"), "REPORT_DIR": str(work / "reports"),
            "BATCH_TIMEZONE": "Europe/Rome"}


def analysis_command(*job_options: str) -> list[str]:
    """This package's job as a user runs it."""
    return [str(PROJECT_ROOT / "start-spark.sh"), "--foreground", *job_options]


def seed_variant(raw: Path, server: local_postgres.LocalPostgres) -> tuple[list[str], dict[str, str]]:
    """The seed-style reference's command and environment, writing to the server's `public`."""
    url = f"jdbc:postgresql://{server.host}:{server.port}/{server.database}"
    return (_submit(BENCH / "seed_reference.py", str(raw), url, server.user, "public", jars=True),
            {**_spark_env(), "BENCH_POSTGRES_PASSWORD": server.password()})


def before_variant(before: Path, analysis_env: dict[str, str],
                   schema: str) -> tuple[list[str], dict[str, str]]:
    """The job of the --before tree with this tree's job environment, publishing to `schema`."""
    # Its launcher finds its own Spark and Python: none of this tree's.
    own = {name: value for name, value in analysis_env.items()
           if name not in ("SPARK_HOME", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    # Run from its own folder: an earlier launcher may resolve its settings from there.
    return (["bash", "-c", 'cd "$1" && exec ./start-spark.sh --foreground', "before", str(before)],
            {**own, **_before_env(before), "POSTGRES_SCHEMA": schema})


def variants(raw: Path, server: local_postgres.LocalPostgres, work: Path,
             before: Path | None) -> Plan:
    """Each variant's command, environment and summary file (this package's job only)."""
    env = _spark_env()
    summary = summary_path(work)
    # A schema per input: each run replaces the results of the same input, as a nightly run
    # replaces the previous night's, not those of the other shape.
    input_name = re.sub(r"[^a-z0-9]", "_", raw.name.lower())
    # Full runs (FULL_REBUILD; an older tree without the option ignores it): once a run has
    # stored its state, the next would be incremental, with nothing new to read.
    analysis_env = {**analysis_environment(raw, server, work, f"bench_{input_name}"), "FULL_REBUILD": "true"}
    plan: Plan = {
        "analysis": (analysis_command(), analysis_env, summary),
        "seed": (*seed_variant(raw, server), None),
        "floor": (_submit(BENCH / "spark_floor.py", str(raw)), env, None),
        "duckdb": ([sys.executable, str(BENCH / "duckdb_reference.py"), str(raw), "Europe/Rome"],
                   env, None),
    }
    if before is not None:
        # Its own schema: its tables may be shaped differently.
        plan["before"] = (*before_variant(before, analysis_env, f"bench_before_{input_name}"), summary)
    return plan


def vacuum(server: local_postgres.LocalPostgres, database: str | None = None) -> None:
    """VACUUM the benchmark's database before a run, outside its timing: a nightly run starts on
    tables that autovacuum cleaned in the day since the last one, not on the dead rows of a run
    a minute earlier, whose autovacuum would otherwise fall on whichever run comes next."""
    conn = connect(server, database)
    try:
        with conn.cursor() as cursor:
            cursor.execute("VACUUM")
    finally:
        conn.close()


def connect(server: local_postgres.LocalPostgres, database: str | None = None):
    """An autocommit connection to `database` (default: the server's own) as its superuser."""
    conn = psycopg2.connect(host=server.host, port=server.port, dbname=database or server.database,
                            user=server.user, password=server.password())
    conn.autocommit = True
    return conn


def measure(variant: str, shape: str, rows: int, plan: Plan, log_dir: Path) -> Measurement:
    command, env, summary_json = plan[variant]
    log_path = log_dir / f"{variant}-{shape}-{rows}-{time.strftime('%H%M%S')}.log"
    if summary_json is not None:
        summary_json.unlink(missing_ok=True)  # never the previous run's phases
    load = load_average()
    seconds, cpu_seconds, sampler = run_sampled(variant, command, env, log_path)
    summary: dict[str, Any] = {}
    if summary_json is not None and summary_json.exists():
        summary = json.loads(summary_json.read_text())
    phases = summary.get("phase_seconds") or {}
    result = Measurement(variant, shape, rows, round(seconds, 2), round(cpu_seconds, 1),
                         round(sampler.peak_tree_kib / 1024, 1),
                         round(sampler.peak_driver_kib / 1024, 1), load, phases, summary)
    print(f"  {variant:<9} {shape:<9} {rows:>11,} rows {result.seconds:8.2f} s (CPU "
          f"{result.cpu_seconds:6.1f} s)  peak {result.peak_mib:7.1f} MiB (driver "
          f"{result.driver_peak_mib:6.1f})  load {load} -> {load_average()}"
          f"{'  phases ' + json.dumps(phases) if phases else ''}", flush=True)
    return result


def _median(results: list[Measurement], variant: str) -> float | None:
    seconds = [m.seconds for m in results if m.variant == variant]
    return statistics.median(seconds) if seconds else None


def _publish_share(results: list[Measurement], variant: str = "analysis") -> float | None:
    """Median share of the job's wall time spent in its `publish` phase (staging writes + swap)."""
    shares = [m.phases["publish"] / m.seconds for m in results
              if m.variant == variant and "publish" in m.phases]
    return statistics.median(shares) if shares else None


def report(results: list[Measurement], shape: str, rows: int) -> None:
    """Medians and ratios at one shape and size, from alternating runs of one invocation."""
    mine = [m for m in results if m.shape == shape and m.rows == rows]
    loads = sorted({m.load for m in mine})
    print(f"\n{shape}, {rows:,} readings (load averages at the starts: {', '.join(loads)})")
    print("variant     median s   CPU s   peak MiB  driver MiB   analysis / variant")
    analysis = _median(mine, "analysis")
    for variant in dict.fromkeys(m.variant for m in mine):
        runs = [m for m in mine if m.variant == variant]
        seconds = _median(mine, variant)
        assert seconds is not None
        ratio = f"{analysis / seconds:8.2f}" if analysis else ""
        print(f"{variant:<10} {seconds:9.2f} {statistics.median(m.cpu_seconds for m in runs):7.1f} "
              f"{max(m.peak_mib for m in runs):10.1f} {max(m.driver_peak_mib for m in runs):11.1f}"
              f"   {ratio}")
    floor, seed = _median(mine, "floor"), _median(mine, "seed")
    for job in JOBS:
        seconds = _median(mine, job)
        if seconds is None:
            continue
        figures = [f"{job} / floor {seconds / floor:.2f}x" if floor else "",
                   f"seed / {job} {seed / seconds:.2f}x" if seed else ""]
        share = _publish_share(mine, job)
        if share is not None:
            figures.append(f"publish share {share:.1%}")
        runs = [m for m in mine if m.variant == job and m.phases]
        if runs:
            phases = {name: statistics.median(m.phases.get(name, 0.0) for m in runs)
                      for name in runs[0].phases}
            figures.append("phases (medians, s) " + ", ".join(f"{k} {v:.2f}" for k, v in phases.items()))
        print(f"{job}: " + "; ".join(f for f in figures if f))
    before = _median(mine, "before")
    if analysis and before:
        print(f"before / analysis = {before / analysis:.2f}x")


def report_targets(results: list[Measurement], cells: list[tuple[str, int]]) -> None:
    """The targets of issue 14 (1, 2) per shape and size, as ratios of medians; '-' not measured."""
    print("\ntargets of issue 14 (medians of this invocation)")
    print(f"{'shape':<10} {'readings':>11}  {'analysis/floor <=1.5':>21}  "
          f"{'seed/analysis >=2 (5M)':>23}  {'publish share <10% (5M)':>24}")
    for shape, rows in cells:
        mine = [m for m in results if m.shape == shape and m.rows == rows]
        analysis, floor, seed = (_median(mine, v) for v in ("analysis", "floor", "seed"))
        share = _publish_share(mine)
        print(f"{shape:<10} {rows:>11,}  "
              f"{f'{analysis / floor:.2f}x' if analysis and floor else '-':>21}  "
              f"{f'{seed / analysis:.2f}x' if analysis and seed else '-':>23}  "
              f"{f'{share:.1%}' if share is not None else '-':>24}")


def report_scaling(results: list[Measurement]) -> None:
    """Growth of the time per million readings and of peak memory, each smaller size to the largest."""
    for shape, variant in dict.fromkeys((m.shape, m.variant) for m in results):
        mine = [m for m in results if m.shape == shape and m.variant == variant]
        sizes = sorted({m.rows for m in mine})
        median = {rows: statistics.median(m.seconds for m in mine if m.rows == rows) for rows in sizes}
        peak = {rows: max(m.peak_mib for m in mine if m.rows == rows) for rows in sizes}
        driver = {rows: max(m.driver_peak_mib for m in mine if m.rows == rows) for rows in sizes}
        largest = sizes[-1]
        for rows in sizes[:-1]:
            growth = (median[largest] / largest) / (median[rows] / rows)
            print(f"{variant} {shape}: {rows:,} -> {largest:,} readings: "
                  f"{median[rows] / rows * 1e6:.2f} -> {median[largest] / largest * 1e6:.2f} s per "
                  f"million, x{growth:.2f} (target <= 1); peak memory of the tree {peak[rows]:.0f} -> "
                  f"{peak[largest]:.0f} MiB (x{peak[largest] / peak[rows]:.2f}), of the PySpark "
                  f"driver {driver[rows]:.0f} -> {driver[largest]:.0f} MiB", flush=True)


def alternate(variants_: list[str], repeat: int) -> list[str]:
    return variants_ if repeat % 2 == 0 else list(reversed(variants_))


def main(argv: list[str]) -> int:
    if "--nightly" in argv:
        # Issue 22's scenario has its own sizes, variants and report (tests/bench/nightly.py).
        from tests.bench.nightly import main as nightly_main

        return nightly_main([arg for arg in argv if arg != "--nightly"])
    parser = argparse.ArgumentParser(prog="tests/bench/run.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000, 5_000_000],
                        help="input sizes, readings (default: 100000 1000000 5000000)")
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scaling", type=int, nargs="*", default=[],
                        help="sizes of the analysis-alone scaling runs (alternating, --repeats each; "
                             "--rows sizes are reused, not run again), e.g. 5000000 20000000")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/indoor-air-bench"),
                        help="generated inputs (kept for the next run), logs, PostgreSQL")
    parser.add_argument("--only", nargs="+", choices=VARIANTS, help="variants to run (default: all)")
    parser.add_argument("--before", metavar="REV",
                        help="git revision whose analysis (and downloader) run as variant `before`")
    parser.add_argument("--skip-download", "--skip-export", action="store_true",
                        help="skip the downloader benchmark (tests/bench/bench_download.py)")
    args = parser.parse_args(argv)
    chosen = args.only or [v for v in VARIANTS if v != "before" or args.before]
    if "before" in chosen and not args.before:
        parser.error("the `before` variant needs --before REV")
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    log_dir = work / "logs"
    log_dir.mkdir(exist_ok=True)
    print(f"machine: {os.cpu_count()} cores, load average {load_average()}; logs in {log_dir}",
          flush=True)
    before = before_tree(args.before, work) if args.before else None
    server = local_postgres.start(work / "postgres", ephemeral=True)
    try:
        inputs = {(shape, rows): ensure_shape(work, shape, rows)
                  for rows in args.rows for shape in args.shapes}
        plans = {cell: variants(raw, server, work, before) for cell, raw in inputs.items()}
        results = []
        for repeat in range(args.repeats):
            print(f"repetition {repeat + 1}/{args.repeats}", flush=True)
            # Alternating shapes, sizes and variants: the machine's drift spreads over all.
            for (shape, rows), plan in plans.items():
                for variant in alternate(chosen, repeat):
                    vacuum(server)
                    results.append(measure(variant, shape, rows, plan, log_dir))
        for shape, rows in inputs:
            report(results, shape, rows)
        report_targets(results, list(inputs))
        if not args.skip_download:
            before_args = ["--variants", "downloader", "before", "naive", "floor",
                           "--before", args.before] if args.before else []
            subprocess.run([sys.executable, "-m", "tests.bench.bench_download",
                            "--rows", *map(str, args.rows), "--repeats", str(args.repeats),
                            "--workdir", str(work), *before_args], check=True, cwd=PROJECT_ROOT)
        jobs = [v for v in JOBS if v in chosen]
        if args.scaling and jobs:
            print("\nanalysis scaling", flush=True)
            scaled = {(shape, rows): variants(ensure_shape(work, shape, rows), server, work, before)
                      for rows in args.scaling for shape in args.shapes if rows not in args.rows}
            scaling = []
            for repeat in range(args.repeats):
                for (shape, rows), plan in scaled.items():
                    for variant in alternate(jobs, repeat):
                        vacuum(server)
                        scaling.append(measure(variant, shape, rows, plan, log_dir))
            # The main runs at the --scaling sizes count too.
            report_scaling(scaling + [m for m in results
                                      if m.variant in jobs and m.rows in args.scaling])
    finally:
        local_postgres.stop(work / "postgres")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
