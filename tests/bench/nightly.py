"""Issue 22's nightly scenario (benchmark only, run by hand, never in CI).

    tests/bench/run.sh --nightly [--rows 5000000 20000000] [--repeats 3] [--before REV] \\
        [--int96] [--only VARIANT...] [--workdir /tmp/indoor-air-bench]

For each history size, the `many_days` readings as a streaming sink of >= 400 micro-batches
(tests/bench/sink_shapes.py, made once and kept in the workdir), each repetition:

1. a fresh copy of the cached sink history is analysed once (`build`: no state yet, so a full
   run that writes it; printed, not in the targets) into its own database;
2. one more school day is appended to the copy (`append_day`: about 1/730 of the history, 1 %
   late readings of older days), and the database is cloned (CREATE DATABASE ... TEMPLATE), so
   that the two runs below start from the same state and published tables;
3. alternating (the order reversed every other repetition), on that same appended sink:
   - `incremental`: this package's job as a user runs it every night (start-spark.sh
     --foreground, its default mode: incremental, since state exists);
   - `full`: the same with --full, in the cloned database;
   - `seed`: the seed-style job (tests/bench/seed_reference.py);
   - `before`: with --before REV, that revision's analysis (today's, without incremental runs),
     in its own schema;
   - `files8`: at the smallest size only, `full` on the same readings as 8 plain files
     (`plain_copy`): what the sink's small files cost.
   `before` and `files8` publish to schemas kept across repetitions: each runs once untimed
   before the first repetition, so that every timed run replaces tables, as a nightly run does.

Then the medians of each variant, the runs' mode and counts from their SUMMARY_JSON, and the
targets of issue 22 as ratios in a markdown table. Until the job has --full (read from
`start-spark.sh --help`), `full` runs the job without it and `incremental` is today's full run
too: the plumbing runs, the ratios mean nothing.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from psycopg2 import errors, sql
from pyspark.sql import SparkSession

from devtools import local_postgres
from tests.bench.run import (PROJECT_ROOT, Measurement, Plan, alternate, analysis_command, analysis_environment,
                             before_tree, before_variant, connect, load_average, measure,
                             seed_variant, summary_path, vacuum)
from tests.bench.sink_shapes import append_day, copy_sink, ensure_many_days_sink, plain_copy

VARIANTS = ("incremental", "full", "seed", "before", "files8")
# Variants publishing to a schema kept across repetitions (primed once, see above).
PRIMED = ("before", "files8")
SHAPE = "nightly"
SCHEMA = "bench_nightly"
PLAIN_FILES = 8
# What the job's SUMMARY_JSON says a run did (issue 22), printed for `incremental` and `full`.
RUN_FACTS = ("input_files_new", "input_files_changed", "input_files_removed",
             "readings_read_this_run", "device_days_recomputed")
CLONE_ATTEMPTS = 10


def job_has_full_option() -> bool:
    """Whether this tree's job takes --full (issue 22), from the options its --help lists."""
    helped = subprocess.run([str(PROJECT_ROOT / "start-spark.sh"), "--help"], capture_output=True,
                            text=True, cwd=PROJECT_ROOT)
    return re.search(r"^\s*--full(\s|,|$)", helped.stdout, re.MULTILINE) is not None


def recreate_database(server: local_postgres.LocalPostgres, name: str,
                      template: str | None = None) -> None:
    """Database `name` made anew, empty or as a copy of `template`."""
    conn = connect(server)
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template is None:
                cursor.execute(create)
                return
            # Refused while anyone is connected to the template: autovacuum may be, for a moment.
            for attempt in range(CLONE_ATTEMPTS):
                try:
                    cursor.execute(create + sql.SQL(" TEMPLATE {}").format(sql.Identifier(template)))
                    return
                except errors.ObjectInUse:
                    if attempt == CLONE_ATTEMPTS - 1:
                        raise
                    time.sleep(1)
    finally:
        conn.close()


def databases(rows: int) -> tuple[str, str]:
    """The databases of the incremental run (and of the build before it) and of the full run."""
    return f"nightly_{rows}", f"nightly_{rows}_full"


def nightly_plan(rows: int, sink: Path, plain: Path | None, server: local_postgres.LocalPostgres,
                 work: Path, before: Path | None, full_option: list[str]) -> Plan:
    """Each variant's command, environment and summary file on the `rows` history's `sink`."""
    incremental_db, full_db = databases(rows)
    env = analysis_environment(sink, server, work, SCHEMA)
    summary = summary_path(work)
    incremental = (analysis_command(), {**env, "POSTGRES_DB": incremental_db}, summary)
    plan: Plan = {
        "build": incremental,  # the first run, with no state yet
        "incremental": incremental,
        "full": (analysis_command(*full_option), {**env, "POSTGRES_DB": full_db}, summary),
        "seed": (*seed_variant(sink, server), None),
    }
    if before is not None:
        plan["before"] = (*before_variant(before, env, f"{SCHEMA}_before_{rows}"), summary)
    if plain is not None:
        plain_env = analysis_environment(plain, server, work, f"{SCHEMA}_files{PLAIN_FILES}_{rows}")
        plan["files8"] = (analysis_command(*full_option), plain_env, summary)
    return plan


def check_mode(result: Measurement, expected: str) -> None:
    """Say when a run did not run in the mode it measures (its timing would mislead)."""
    mode = result.summary.get("mode")
    if mode != expected:
        print(f"  WARNING: the {result.variant} run ran in mode {mode!r} "
              f"({result.summary.get('mode_reason')!r}), not {expected!r}", flush=True)


def _median(results: list[Measurement], variant: str, rows: int) -> float | None:
    seconds = [m.seconds for m in results if m.variant == variant and m.rows == rows]
    return statistics.median(seconds) if seconds else None


def _ratio(numerator: float | None, denominator: float | None, bound: float | None = None,
           at_most: bool = True) -> str:
    """numerator / denominator, judged against `bound` when the issue sets one at this size."""
    if not numerator or not denominator:
        return "-"
    ratio = numerator / denominator
    if bound is None:
        return f"{ratio:.2f}x"
    return f"{ratio:.2f}x ({'met' if (ratio <= bound if at_most else ratio >= bound) else 'missed'})"


def report(results: list[Measurement], sizes: list[int], repeats: int, command: str) -> None:
    """Per size the medians, modes and counts; then issue 22's targets as one markdown table."""
    for rows in sizes:
        mine = [m for m in results if m.rows == rows]
        print(f"\nnightly, {rows:,} readings of history (load averages at the starts: "
              f"{', '.join(sorted({m.load for m in mine}))})")
        print("variant      median s   CPU s   peak MiB  driver MiB  modes")
        for variant in dict.fromkeys(m.variant for m in mine):
            runs = [m for m in mine if m.variant == variant]
            modes = sorted({str(m.summary.get("mode", "-")) for m in runs})
            print(f"{variant:<11} {_median(mine, variant, rows):9.2f} "
                  f"{statistics.median(m.cpu_seconds for m in runs):7.1f} "
                  f"{max(m.peak_mib for m in runs):10.1f} {max(m.driver_peak_mib for m in runs):11.1f}"
                  f"  {', '.join(modes)}")
            if runs[0].phases:
                phases = {name: statistics.median(m.phases.get(name, 0.0) for m in runs)
                          for name in runs[0].phases}
                print("            phases (medians, s) "
                      + ", ".join(f"{name} {seconds:.2f}" for name, seconds in phases.items()))
            facts = {fact: runs[-1].summary[fact] for fact in RUN_FACTS if fact in runs[-1].summary}
            if facts:
                print(f"            last run: mode_reason {runs[-1].summary.get('mode_reason')!r}, "
                      + ", ".join(f"{fact} {value}" for fact, value in facts.items()))
    medians = {(variant, rows): _median(results, variant, rows) for variant in VARIANTS for rows in sizes}
    header = " | ".join(f"{rows:,}" for rows in sizes)
    print(f"\nIssue 22's targets (medians of {repeats} alternating runs, one invocation)\n")
    print(f"| history (readings) | {header} | target |")
    print(f"|---|{'---|' * len(sizes)}---|")
    labels = {"incremental": "incremental run, s", "full": "full rebuild (--full), s",
              "seed": "seed-style job, s", "before": "before (today's analysis), s",
              "files8": f"full on {PLAIN_FILES} plain files, s"}
    for variant, label in labels.items():
        cells = [medians[variant, rows] for rows in sizes]
        if any(cells):
            print(f"| {label} | " + " | ".join(f"{c:.1f}" if c else "-" for c in cells) + " | |")
    rows_of = [
        ("**incremental / full**", "incremental", "full", {5_000_000: 0.25, 20_000_000: 0.12}, True,
         "<= 0.25 at 5M, <= 0.12 at 20M"),
        ("**seed / incremental**", "seed", "incremental", {5_000_000: 3.0, 20_000_000: 10.0}, False,
         ">= 3 at 5M, >= 10 at 20M"),
        ("**full / before** (same sink)", "full", "before", {rows: 1.0 for rows in sizes}, True,
         "<= 1 (no slower)"),
        (f"full on the sink / on {PLAIN_FILES} files", "full", "files8", {}, True,
         "reported (small-file cost)"),
    ]
    for label, numerator, denominator, bounds, at_most, target in rows_of:
        print(f"| {label} | " + " | ".join(
            _ratio(medians[numerator, rows], medians[denominator, rows], bounds.get(rows), at_most)
            for rows in sizes) + f" | {target} |")
    if len(sizes) > 1:
        smallest, largest = sizes[0], sizes[-1]
        growth = _ratio(medians["incremental", largest], medians["incremental", smallest],
                        1.3 if (smallest, largest) == (5_000_000, 20_000_000) else None)
        print(f"| **incremental {largest:,} / {smallest:,}** | {growth} |{' |' * (len(sizes) - 1)} "
              "<= 1.3 from 5M to 20M |")
    print(f"\nCommand: `{command}`", flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tests/bench/run.sh --nightly",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[5_000_000, 20_000_000],
                        help="history sizes, readings (default: 5000000 20000000)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="+", choices=VARIANTS, help="variants to run (default: all)")
    parser.add_argument("--before", metavar="REV",
                        help="git revision of today's analysis (before incremental runs): variant `before`")
    parser.add_argument("--int96", action="store_true",
                        help="the sink's timestamps as INT96, as Spark's file sink writes them by default")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/indoor-air-bench"),
                        help="generated inputs (kept for the next run), logs, PostgreSQL")
    args = parser.parse_args(argv)
    command = shlex.join(["tests/bench/run.sh", "--nightly", *argv])
    chosen = args.only or [v for v in VARIANTS if v != "before" or args.before]
    if "before" in chosen and not args.before:
        parser.error("the `before` variant needs --before REV")
    sizes = sorted(args.rows)
    work = args.workdir
    log_dir = work / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores, load average {load_average()}; logs in {log_dir}\n"
          f"command: {command}", flush=True)
    full_option = ["--full"] if job_has_full_option() else []
    if not full_option:
        print("WARNING: start-spark.sh has no --full option (issue 22 not merged): `full` and "
              "`incremental` both run today's analysis; the ratios mean nothing", flush=True)
    before = before_tree(args.before, work) if args.before else None
    # The sink's log is written by Spark's own FileStreamSinkLog class: a JVM for the inputs,
    # idle while the runs are timed (their memory is sampled from their own process tree).
    spark = (SparkSession.builder.master("local[1]").appName("bench-nightly-inputs")
             .config("spark.ui.enabled", "false").getOrCreate())
    server = local_postgres.start(work / "postgres", ephemeral=True)
    try:
        histories = {rows: ensure_many_days_sink(spark, work, rows, args.int96) for rows in sizes}
        sinks = {rows: work / "nightly" / history.name for rows, history in histories.items()}
        results: list[Measurement] = []
        for repeat in range(args.repeats):
            print(f"repetition {repeat + 1}/{args.repeats}", flush=True)
            for rows in alternate(sizes, repeat):
                sink = copy_sink(spark, histories[rows], sinks[rows])
                plain = work / "nightly" / f"{sink.name}-files{PLAIN_FILES}"
                with_plain = "files8" in chosen and rows == sizes[0]
                plan = nightly_plan(rows, sink, plain if with_plain else None, server, work, before,
                                    full_option)
                incremental_db, full_db = databases(rows)
                recreate_database(server, incremental_db)
                build = measure("build", SHAPE, rows, plan, log_dir)
                if full_option:
                    check_mode(build, "full")  # no state yet
                day = append_day(spark, sink)
                print(f"  appended {day.day}: {day.readings:,} readings ({day.late_readings:,} late) "
                      f"in micro-batches {day.micro_batches[0]}-{day.micro_batches[-1]}", flush=True)
                vacuum(server, incremental_db)
                recreate_database(server, full_db, template=incremental_db)
                if repeat == 0:
                    # The same readings every repetition (append_day is seeded): made once.
                    if with_plain:
                        plain_copy(sink, plain, PLAIN_FILES)
                    for variant in (v for v in PRIMED if v in plan and v in chosen):
                        print(f"  priming {variant} (untimed: its tables exist before the timed runs)")
                        measure(variant, SHAPE, rows, plan, log_dir)
                for variant in alternate([v for v in chosen if v in plan], repeat):
                    vacuum(server)
                    result = measure(variant, SHAPE, rows, plan, log_dir)
                    if full_option and variant in ("incremental", "full"):
                        check_mode(result, variant)
                    results.append(result)
        report(results, sizes, args.repeats, command)
    finally:
        local_postgres.stop(work / "postgres")
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
