"""Benchmark, run by hand (never in CI): the downloader against the naive single-file write and the floor.

    .venv/bin/python -m tests.bench.bench_download --rows 5000000 --repeats 3 --workdir /tmp/bench \
        --shapes demo many_days

Variants, each in its own spark-submit process (local[*], --driver-memory 2g, as the launcher):
- `downloader`: spark-downloader.py of this tree, as the launcher runs it;
- `before`: spark-downloader.py of an earlier commit (`--before REV`, extracted with
  `git archive` into the workdir), to measure a change in the same invocation;
- `naive`: the same reader, options and sort keys, then `orderBy(...).coalesce(1).write.csv`
  (one task sorts and writes everything), the single part renamed to the target;
- `floor`: the same reader, columns and CSV options, an unsorted multi-part `df.write.csv`:
  the least work any download of these rows does (no order, no single file).

Input shapes (tests/bench/shapes.py, each written once into the workdir and reused when
present): `demo`, devtools.demo's dataset (104 devices x 365 days, readings in time order), and
`many_days`, 1,000 devices over two school years with readings in random order within each
file. The variants
alternate (the order reversed every other repetition). tests/bench/measure.py samples /proc for
the peak memory of the process tree's JVM and Python (sum of PSS) and the peak RSS of the JVM
(the driver, which in local mode runs the executors too) and of the Python driver. The
machine's load average is printed with every run: other work on the machine skews the times,
so compare the ratios of one invocation. The single-file outputs must be byte-identical (same
dialect and order), which the benchmark checks; the floor's parts must hold as many bytes as
the single file without its header. Prints one line per run (with the downloader's phases,
from its summary JSON), then the medians and the ratios per shape and size.
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

from tests.bench.measure import PROJECT_ROOT, ensure_input, extract_commit, run_sampled
from tests.bench.shapes import SHAPES, ensure_many_days

VARIANTS = ("downloader", "before", "naive", "floor")
SINGLE_FILE = ("downloader", "before", "naive")  # byte-identical outputs


@dataclass(frozen=True)
class RunResult:
    variant: str
    shape: str
    rows: int
    seconds: float
    cpu_seconds: float  # user + system, JVM and Python driver
    load_average: float  # 1-minute load average at the end of the run
    peak_tree_pss_mib: float
    peak_jvm_mib: float
    peak_python_mib: float
    output_bytes: int
    sha256: str  # empty for the floor's parts
    phases: dict[str, float]  # the downloader's phase seconds (its summary JSON); empty otherwise


# --- the baselines (run inside spark-submit) --------------------------------------------------

def _read_all_columns(app_name: str, raw_path: str) -> tuple[object, object, tuple[str, ...]]:
    from batch.core.contract import RAW_COLUMNS
    from batch.core.readers import read_raw_readings
    from batch.core.session import build_spark_session

    spark = build_spark_session(app_name)
    columns = tuple(column.name for column in RAW_COLUMNS)
    readings_df, _ = read_raw_readings(spark, raw_path, columns)
    profile = os.environ.get("BENCH_PROFILE")
    if profile:  # the same selection as the downloader's --profile
        readings_df = readings_df.where(readings_df["profile"] == profile)
    return spark, readings_df, columns


def naive_download(raw_path: str, target: Path, timezone_name: str) -> None:
    from pyspark.sql import functions as F

    from batch.download.files import csv_write_options
    from batch.download.rows import ORDER_KEYS

    spark, readings_df, columns = _read_all_columns("bench-naive-download", raw_path)
    folder = target.with_name(target.name + ".naive-parts")
    options = csv_write_options(timezone_name, compress=False)
    keys = (*ORDER_KEYS, *[name for name in columns if name not in ORDER_KEYS])
    (readings_df.orderBy(*[F.col(name).asc_nulls_last() for name in keys]).select(*columns).coalesce(1)
     .write.mode("overwrite").options(**options).csv(f"file://{folder}"))
    (part,) = folder.glob("part-*")
    os.replace(part, target)
    shutil.rmtree(folder)
    spark.stop()


def floor_download(raw_path: str, target: Path, timezone_name: str) -> None:
    """The same rows, columns and CSV options, unsorted, left as Spark's parts in `target` (a folder)."""
    from batch.download.files import csv_write_options

    spark, readings_df, columns = _read_all_columns("bench-floor-download", raw_path)
    shutil.rmtree(target, ignore_errors=True)
    # No header: one per part would be more bytes than the single file's one.
    options = {**csv_write_options(timezone_name, compress=False), "header": "false"}
    readings_df.select(*columns).write.options(**options).csv(f"file://{target}")
    spark.stop()


# --- measuring --------------------------------------------------------------------------------

def _submit_command(script: Path, args: list[str], driver_memory: str, master: str) -> list[str]:
    # The launcher's spark-submit settings (memory, progress bar, time zone, logging).
    return [str(PROJECT_ROOT / ".venv" / "bin" / "spark-submit"), "--master", master,
            "--driver-memory", driver_memory,
            "--conf", "spark.ui.showConsoleProgress=false",
            "--conf", "spark.driver.extraJavaOptions=-Duser.timezone=UTC "
                      f"-Dlog4j2.configurationFile=file:{PROJECT_ROOT}/env/log4j2.properties",
            "--conf", "spark.executor.extraJavaOptions=-Duser.timezone=UTC",
            str(script), *args]


def ensure_shape(input_dir: Path, shape: str, rows: int) -> Path:
    """The input of `shape` with `rows` readings, generated once into `input_dir`."""
    if shape == "many_days":
        return ensure_many_days(input_dir, rows)
    from devtools.demo import read_demo_dataset_info

    folder = input_dir / f"raw-{rows}"
    existing = read_demo_dataset_info(folder)
    if existing is not None and existing.readings == rows \
            and all((folder / name).is_file() for name in existing.files):
        # Any complete demo dataset of that size will do, even one written by an older
        # generator (which ensure_input would replace): every variant reads the same input.
        print(f"input: {rows:,} demo readings in {len(existing.files)} files at {folder}", flush=True)
        return folder
    return ensure_input(input_dir, rows)


def run_variant(variant: str, shape: str, raw_path: Path, target: Path, rows: int,
                driver_memory: str, master: str, log_dir: Path, before_tree: Path | None,
                profile: str) -> RunResult:
    _remove_output(target)
    import pyspark

    root = before_tree if variant == "before" and before_tree is not None else PROJECT_ROOT
    # As the launcher: the virtualenv's Spark, and its Python on both sides.
    env = {**os.environ, "PYTHONPATH": str(root), "RAW_DATA_PATH": str(raw_path),
           "BATCH_TIMEZONE": "Europe/Rome", "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARK_HOME": str(Path(pyspark.__file__).parent), "PYSPARK_PYTHON": sys.executable,
           "PYSPARK_DRIVER_PYTHON": sys.executable, "BENCH_PROFILE": profile}
    summary = target.with_name(target.name + ".summary.json")
    if variant in ("downloader", "before"):
        command = _submit_command(
            root / "spark-downloader.py",
            ["--output", str(target), "--summary-json", str(summary),
             *(["--profile", profile] if profile else [])],
            driver_memory, master)
    else:
        command = _submit_command(Path(__file__), [f"--{variant}-worker", str(raw_path), str(target)],
                                  driver_memory, master)
    log_path = log_dir / f"{variant}-{shape}-{rows}-{time.strftime('%H%M%S')}.log"
    seconds, cpu_seconds, sampler = run_sampled(variant, command, env, log_path)
    if target.is_dir():
        size = sum(part.stat().st_size for part in target.glob("part-*"))
        digest = ""
    else:
        size, digest = target.stat().st_size, _sha256(target)
    phases = json.loads(summary.read_text())["phase_seconds"] if summary.is_file() else {}
    return RunResult(variant, shape, rows, round(seconds, 2), round(cpu_seconds, 1),
                     round(os.getloadavg()[0], 1),
                     round(sampler.peak_tree_kib / 1024, 1),
                     round(sampler.peak_jvm_kib / 1024, 1),
                     round(sampler.peak_python_kib / 1024, 1), size, digest, phases)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _check_same_work(repetition: list[RunResult]) -> None:
    single = [r for r in repetition if r.variant in SINGLE_FILE]
    if len({r.sha256 for r in single}) > 1:
        raise SystemExit("the single-file downloads differ: the benchmark compares different work")
    floor = [r for r in repetition if r.variant == "floor"]
    if single and floor:
        # The floor's parts hold the same records, without the one header line.
        header = len(",".join(_column_names()).encode("utf-8")) + 1
        if floor[0].output_bytes != single[0].output_bytes - header:
            raise SystemExit(f"the floor wrote {floor[0].output_bytes:,} bytes, the single file "
                             f"{single[0].output_bytes - header:,} without its header")


def _column_names() -> tuple[str, ...]:
    from batch.core.contract import RAW_COLUMNS

    return tuple(column.name for column in RAW_COLUMNS)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--naive-worker"]:
        naive_download(argv[1], Path(argv[2]), os.environ.get("BATCH_TIMEZONE", "UTC"))
        return 0
    if argv[:1] == ["--floor-worker"]:
        floor_download(argv[1], Path(argv[2]), os.environ.get("BATCH_TIMEZONE", "UTC"))
        return 0
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_download",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[5_000_000])
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES),
                        help="input shapes to measure, each at every --rows (default: all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/indoor-air-bench"))
    parser.add_argument("--input-dir", type=Path,
                        help="folder holding (or to hold) the inputs; default: the workdir")
    parser.add_argument("--driver-memory", default="2g")
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS,
                        default=["downloader", "naive", "floor"])
    parser.add_argument("--profile", default="",
                        help="download only this device profile (every variant selects the same rows)")
    parser.add_argument("--before", metavar="REV",
                        help="git revision whose downloader the `before` variant runs")
    args = parser.parse_args(argv)
    if "before" in args.variants and not args.before:
        parser.error("the `before` variant needs --before REV")
    args.workdir.mkdir(parents=True, exist_ok=True)
    log_dir = args.workdir / "logs"
    log_dir.mkdir(exist_ok=True)
    before_tree = extract_commit(args.before, args.workdir) if args.before else None
    print(f"machine: {os.cpu_count()} cores, master {args.master}, driver memory "
          f"{args.driver_memory}, load average {os.getloadavg()[0]:.1f}"
          f"{f', before = {args.before}' if args.before else ''}"
          f"{f', --profile {args.profile}' if args.profile else ''}", flush=True)
    results: list[RunResult] = []
    for rows in args.rows:
        for shape in args.shapes:
            raw_path = ensure_shape(args.input_dir or args.workdir, shape, rows)
            for repeat in range(args.repeats):
                order = args.variants if repeat % 2 == 0 else list(reversed(args.variants))
                repetition = []
                for variant in order:
                    target = args.workdir / f"download-{variant}.csv"
                    result = run_variant(variant, shape, raw_path, target, rows,
                                         args.driver_memory, args.master, log_dir, before_tree,
                                         args.profile)
                    repetition.append(result)
                    print(json.dumps(result.__dict__), flush=True)
                _check_same_work(repetition)
                results += repetition
            _report(shape, rows, args.variants,
                    [r for r in results if r.rows == rows and r.shape == shape])
    for variant in args.variants:
        _remove_output(args.workdir / f"download-{variant}.csv")
    return 0


def _remove_output(target: Path) -> None:
    # Up to gigabytes each: not left behind in /tmp.
    if target.is_dir():
        shutil.rmtree(target)
    target.unlink(missing_ok=True)
    target.with_name(target.name + ".summary.json").unlink(missing_ok=True)


def _report(shape: str, rows: int, variants: list[str], results: list[RunResult]) -> None:
    medians = {}
    for variant in variants:
        runs = [r for r in results if r.variant == variant]
        medians[variant] = {
            "seconds": statistics.median(r.seconds for r in runs),
            "cpu_seconds": statistics.median(r.cpu_seconds for r in runs),
            "peak_tree_pss_mib": statistics.median(r.peak_tree_pss_mib for r in runs),
            "peak_jvm_mib": statistics.median(r.peak_jvm_mib for r in runs),
            "peak_python_mib": statistics.median(r.peak_python_mib for r in runs),
            "load": statistics.median(r.load_average for r in runs),
        }
    runs_each = len(results) // len(variants)
    print(f"\n=== {shape} shape, {rows:,} rows, {runs_each} alternating runs each, output "
          f"{results[0].output_bytes / 2 ** 20:,.0f} MiB ===")
    print(f"{'variant':<14}{'median s':>10}{'CPU s':>8}{'peak PSS tree MiB':>20}"
          f"{'JVM MiB':>10}{'Python MiB':>12}{'load':>6}")
    for variant, figures in medians.items():
        print(f"{variant:<14}{figures['seconds']:>10.1f}{figures['cpu_seconds']:>8.1f}"
              f"{figures['peak_tree_pss_mib']:>20.0f}{figures['peak_jvm_mib']:>10.0f}"
              f"{figures['peak_python_mib']:>12.0f}{figures['load']:>6.1f}")
    for variant in ("downloader", "before"):
        phases = [r.phases for r in results if r.variant == variant and r.phases]
        if phases:
            medians_text = ", ".join(f"{name} {statistics.median(p.get(name, 0.0) for p in phases):.1f}"
                                     for name in phases[0])
            print(f"  {variant} phases (median s): {medians_text}")
    # Wall time is what a user waits for; CPU time (JVM and Python) varies less on a shared machine.
    for measure in ("seconds", "cpu_seconds"):
        value = {variant: figures[measure] for variant, figures in medians.items()}
        print(f"ratios of the median {'wall' if measure == 'seconds' else 'CPU'} time:")
        for variant in ("downloader", "before"):
            if variant not in value:
                continue
            if "floor" in value:
                print(f"  {variant} / floor: {value[variant] / value['floor']:.2f}x (target <= 1.3)")
            if "naive" in value:
                print(f"  naive / {variant}: {value['naive'] / value[variant]:.2f}x (target > 1)")
        if "before" in value and "downloader" in value:
            print(f"  before / downloader: {value['before'] / value['downloader']:.2f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
