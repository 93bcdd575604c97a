"""Benchmark, run by hand (never in CI): the downloader's export against the naive single-file write.

    .venv/bin/python -m tests.bench.bench_export --rows 5000000 --repeats 3 --workdir /tmp/bench

- `downloader`: spark-downloader.py itself, as the launcher runs it (spark-submit, local[*],
  --driver-memory 2g): count pass, parallel range-partitioned sort, parts written in
  parallel, parts streamed into one file.
- `naive`: the same reader, options and sort keys, then `orderBy(...).coalesce(1).write.csv`
  (one task sorts and writes everything) and the single part renamed to the target.

The demo generator (devtools.demo) writes the input once (reused when present). The two
variants alternate, each run in its own spark-submit process (tests/bench/measure.py samples /proc
for the peak memory of the process tree's JVM and Python (sum of PSS) and the peak RSS of the JVM
(the driver, which in local mode runs the executors too) and of the Python driver). The
machine's load average is printed with every run: other work on the machine skews the
times. Both outputs must be byte-identical
(same dialect and order), which the benchmark checks. Prints one line per run, then the
medians, the time ratio and the peak memory of both.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.bench.measure import PROJECT_ROOT, ensure_input, run_sampled

VARIANTS = ("downloader", "naive")


@dataclass(frozen=True)
class RunResult:
    variant: str
    rows: int
    seconds: float
    cpu_seconds: float  # user + system, JVM and Python driver
    load_average: float  # 1-minute load average at the end of the run
    peak_tree_pss_mib: float
    peak_jvm_mib: float
    peak_python_mib: float
    output_bytes: int
    sha256: str


# --- the naive baseline (runs inside spark-submit) ------------------------------------------

def naive_export(raw_path: str, target: Path, timezone_name: str) -> None:
    from batch.contract import RAW_COLUMNS
    from batch.export import csv_write_options, order_for_export
    from batch.readers import read_raw_readings
    from batch.session import build_spark_session

    spark = build_spark_session("bench-naive-export")
    columns = tuple(column.name for column in RAW_COLUMNS)
    readings_df, _ = read_raw_readings(spark, raw_path, columns)
    folder = target.with_name(target.name + ".naive-parts")
    options = {**csv_write_options(timezone_name, compress=False), "header": "true"}
    (readings_df.transform(order_for_export, columns).coalesce(1)
     .write.mode("overwrite").options(**options).csv(f"file://{folder}"))
    (part,) = folder.glob("part-*")
    os.replace(part, target)
    shutil.rmtree(folder)
    spark.stop()


# --- measuring --------------------------------------------------------------------------------

def _submit_command(script: Path, args: list[str], driver_memory: str, master: str) -> list[str]:
    # What the launcher (batch/launcher/main.py) runs, minus the JDBC driver the downloader does not use.
    return [str(PROJECT_ROOT / ".venv" / "bin" / "spark-submit"), "--master", master,
            "--driver-memory", driver_memory,
            "--conf", "spark.ui.showConsoleProgress=false",
            "--conf", "spark.driver.extraJavaOptions=-Duser.timezone=UTC "
                      f"-Dlog4j2.configurationFile=file:{PROJECT_ROOT}/env/log4j2.properties",
            "--conf", "spark.executor.extraJavaOptions=-Duser.timezone=UTC",
            str(script), *args]


def run_variant(variant: str, raw_path: Path, target: Path, rows: int, driver_memory: str,
                master: str, log_dir: Path) -> RunResult:
    target.unlink(missing_ok=True)
    import pyspark

    # As the launcher (batch/launcher/main.py): the virtualenv's Spark, and its Python on both sides.
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "RAW_DATA_PATH": str(raw_path),
           "BATCH_TIMEZONE": "Europe/Rome", "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARK_HOME": str(Path(pyspark.__file__).parent), "PYSPARK_PYTHON": sys.executable,
           "PYSPARK_DRIVER_PYTHON": sys.executable}
    if variant == "downloader":
        command = _submit_command(PROJECT_ROOT / "spark-downloader.py",
                                  ["--output", str(target)], driver_memory, master)
    else:
        command = _submit_command(Path(__file__), ["--naive-worker", str(raw_path), str(target)],
                                  driver_memory, master)
    log_path = log_dir / f"{variant}-{time.strftime('%H%M%S')}.log"
    seconds, cpu_seconds, sampler = run_sampled(variant, command, env, log_path)
    return RunResult(variant, rows, round(seconds, 2), round(cpu_seconds, 1),
                     round(os.getloadavg()[0], 1),
                     round(sampler.peak_tree_kib / 1024, 1),
                     round(sampler.peak_jvm_kib / 1024, 1),
                     round(sampler.peak_python_kib / 1024, 1), target.stat().st_size,
                     _sha256(target))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def main(argv: list[str]) -> int:
    if argv[:1] == ["--naive-worker"]:
        naive_export(argv[1], Path(argv[2]), os.environ.get("BATCH_TIMEZONE", "UTC"))
        return 0
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_export",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[5_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/indoor-air-bench"))
    parser.add_argument("--driver-memory", default="2g")
    parser.add_argument("--master", default="local[*]")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    log_dir = args.workdir / "logs"
    log_dir.mkdir(exist_ok=True)
    print(f"machine: {os.cpu_count()} cores, master {args.master}, driver memory "
          f"{args.driver_memory}, load average {os.getloadavg()[0]:.1f}", flush=True)
    results: list[RunResult] = []
    for rows in args.rows:
        raw_path = ensure_input(args.workdir, rows)
        for repeat in range(args.repeats):
            order = VARIANTS if repeat % 2 == 0 else tuple(reversed(VARIANTS))
            for variant in order:
                target = args.workdir / f"export-{variant}.csv"
                result = run_variant(variant, raw_path, target, rows, args.driver_memory,
                                     args.master, log_dir)
                results.append(result)
                print(json.dumps(result.__dict__), flush=True)
            same = {r.sha256 for r in results[-2:]}
            if len(same) != 1:
                raise SystemExit("the two exports differ: the benchmark compares different work")
        _report(rows, [r for r in results if r.rows == rows])
    return 0


def _report(rows: int, results: list[RunResult]) -> None:
    medians = {}
    for variant in VARIANTS:
        runs = [r for r in results if r.variant == variant]
        medians[variant] = {
            "seconds": statistics.median(r.seconds for r in runs),
            "cpu_seconds": statistics.median(r.cpu_seconds for r in runs),
            "peak_tree_pss_mib": statistics.median(r.peak_tree_pss_mib for r in runs),
            "peak_tree_pss_mib_max": max(r.peak_tree_pss_mib for r in runs),
            "peak_jvm_mib": statistics.median(r.peak_jvm_mib for r in runs),
            "peak_python_mib": statistics.median(r.peak_python_mib for r in runs),
        }
    ours, naive = medians["downloader"], medians["naive"]
    print(f"\n=== {rows:,} rows, {len(results) // 2} runs each, output "
          f"{results[0].output_bytes / 2 ** 20:,.0f} MiB (identical bytes) ===")
    print(f"{'variant':<12}{'median s':>10}{'CPU s':>8}{'peak PSS tree MiB':>20}{'(max)':>8}"
          f"{'JVM MiB':>10}{'Python MiB':>12}")
    for variant, figures in medians.items():
        print(f"{variant:<12}{figures['seconds']:>10.1f}{figures['cpu_seconds']:>8.1f}"
              f"{figures['peak_tree_pss_mib']:>20.0f}"
              f"{figures['peak_tree_pss_mib_max']:>8.0f}{figures['peak_jvm_mib']:>10.0f}"
              f"{figures['peak_python_mib']:>12.0f}")
    memory_ratio = naive["peak_tree_pss_mib"] / ours["peak_tree_pss_mib"]
    print(f"time ratio naive / downloader: {naive['seconds'] / ours['seconds']:.2f}; "
          f"peak tree memory ratio naive / downloader: {memory_ratio:.2f}", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
