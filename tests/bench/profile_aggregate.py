"""A timer of each step of the analysis' aggregate phase (benchmark only, no PostgreSQL).

    PYSPARK_PYTHON=.venv/bin/python .venv/bin/spark-submit --master 'local[2]' \\
        --driver-memory 2g tests/bench/profile_aggregate.py RAW_PATH [REPEATS]

e.g. RAW_PATH /tmp/indoor-air-bench/many_days-5000000 (tests/bench/shapes.py). SETUP runs once,
untimed; then, REPEATS times (default 2: the first pays the cold stages, later ones show the
warm cost), each of STEPS, timed, one line each. Both are Python run in one namespace (RAW_PATH,
TIMEZONE and every name an earlier step bound): this file imports nothing from batch/ or tests/ itself,
so when the library's functions change, edit SETUP and STEPS only. A step that only builds a
DataFrame costs its planning: end the ones that should do their work with an action (count,
collect, an eager localCheckpoint).
"""
from __future__ import annotations

import sys
import time

TIMEZONE = "Europe/Rome"

SETUP = """
from pyspark.sql import SparkSession, functions as F
from batch.analysis import iaq_partials, iaq_rollup, iaq_settings, partials as spark_partials
from batch.analysis import rollup, statistics
from batch.core.contract import ANALYSIS_COLUMNS, METRICS, PROFILE
from batch.core.readers import read_raw_readings
from batch.core.session import BASE_CONF
from batch.core.validation import validate_readings
from tests.support.collect import collect_device_day_episodes, collect_partials

builder = SparkSession.builder.appName("bench-profile-aggregate")
for key, value in BASE_CONF.items():
    builder = builder.config(key, value)
spark = builder.getOrCreate()
spark.sparkContext.setLogLevel("WARN")
rules = iaq_settings.IaqSettings().rules()
"""

STEPS: list[tuple[str, str]] = [
    ("read (list files, footers, schema)",
     "readings_df, _ = read_raw_readings(spark, RAW_PATH, ANALYSIS_COLUMNS + (PROFILE,))"),
    ("validate, occupied ranges (plan only)",
     "validated_df = readings_df.transform(validate_readings, iaq_partials.IAQ_VALIDATED_METRICS, False);"
     " occupied_df = validated_df.transform(iaq_partials.with_occupied_range, TIMEZONE, rules.occupancy)"),
    ("partials: scan, validate, aggregate",
     "partials_df = occupied_df.transform(spark_partials.partial_statistics, TIMEZONE,"
     " statistics.Thresholds(), METRICS, extra_aggregates=iaq_partials.iaq_partial_aggregates(rules))"
     ".coalesce(spark.sparkContext.defaultParallelism).localCheckpoint()"),
    ("partials to the driver (Arrow)",
     "partials = collect_partials(partials_df,"
     " statistics.group_keys(statistics.GROUPINGS) + iaq_rollup.IAQ_GROUP_KEYS);"
     " print(f'    {len(partials):,} partial rows')"),
    ("episodes and coverage: scan, sort, fold, collect",
     "episodes = collect_device_day_episodes(validated_df, TIMEZONE, rules, partials);"
     " print(f'    {len(episodes):,} device-days with an occupied CO2 reading')"),
    ("validation counts", "rollup.validation_counts(partials, METRICS)"),
    ("roll-up of every grouping", "rollup.rollup_all(partials, statistics.GROUPINGS, METRICS)"),
    ("IAQ tables", "iaq_rollup.iaq_results(partials, episodes, rules, TIMEZONE)"),
    # The partials' grain with no statistic at all: what the grouping alone costs.
    ("partials' keys only, no statistic (count)",
     "occupied_df.transform(spark_partials.with_reading_date, TIMEZONE)"
     ".groupBy('exclusion_reason', 'institute', 'classroom', 'DevEui', 'reading_date').count().count()"),
    # The Spark floor's aggregation (tests/bench/spark_floor.py) on the same DataFrame.
    ("floor-shaped aggregation (count)",
     "readings_df.groupBy('institute', 'classroom', F.weekofyear('sendtime'))"
     ".agg(*[F.sum(metric.name) for metric in METRICS]).count()"),
]


def main(raw_path: str, repeats: int) -> None:
    namespace: dict[str, object] = {"RAW_PATH": raw_path, "TIMEZONE": TIMEZONE}
    exec(SETUP, namespace)  # noqa: S102 - the benchmark's own text, edited by hand
    for repeat in range(repeats):
        print(f"repetition {repeat + 1}/{repeats}", flush=True)
        for label, code in STEPS:
            started = time.monotonic()
            try:
                exec(code, namespace)  # noqa: S102
            except Exception as error:
                raise SystemExit(f"step {label!r} failed ({error!r}): edit STEPS in {__file__}")
            print(f"  {label:<38} {time.monotonic() - started:7.2f} s", flush=True)
    namespace["spark"].stop()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2)
