"""A timer around each library call of the analysis' aggregate phase (benchmark only).

    spark-submit profile_aggregate.py RAW_PATH TIMEZONE [REPEATS]

In one Spark session, without PostgreSQL: read, then for each repetition the one pass
(validate, partial statistics, collect to the driver), the validation counts, the roll-up
of every grouping, the CSV text of every table COPY would send, and the Spark floor's
aggregation (tests/bench/spark_floor.py) over the same DataFrame. The first repetition
pays the cold stages, later ones show the warm cost. Prints one line per call.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TypeVar

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from batch import aggregations, postgres
from batch.aggregations import GROUPINGS, Thresholds, collect_partials, partial_statistics
from batch.catalog import ALL_STATISTICS, build_catalog
from batch.contract import ANALYSIS_COLUMNS, METRIC_NAMES
from batch.readers import read_raw_readings
from batch.session import BASE_CONF
from batch.validation import validate_readings

Result = TypeVar("Result")


def timed(label: str, call: Callable[[], Result]) -> Result:
    started = time.monotonic()
    result = call()
    print(f"  {label:<34} {time.monotonic() - started:7.2f} s", flush=True)
    return result


def main(raw_path: str, timezone: str, repeats: int) -> None:
    builder = SparkSession.builder.appName("bench-profile-aggregate")
    for key, value in BASE_CONF.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    thresholds = Thresholds()
    catalog = build_catalog(thresholds, timezone)
    readings_df, _ = timed("read_raw_readings", lambda: read_raw_readings(
        spark, raw_path, ANALYSIS_COLUMNS, False))
    for repeat in range(repeats):
        print(f"repetition {repeat + 1}", flush=True)
        partials_df = (readings_df.transform(validate_readings, METRIC_NAMES, False)
                       .transform(partial_statistics, timezone, thresholds))
        partials = timed("partials: scan, aggregate, collect", lambda: collect_partials(
            partials_df, GROUPINGS))
        print(f"  ({len(partials):,} partial rows, {partials.memory_usage(deep=True).sum() / 2**20:.0f} MiB)")
        timed("validation_counts", lambda: aggregations.validation_counts(partials))
        results = {ALL_STATISTICS: timed("rollup_all", lambda: aggregations.rollup_all(
            partials, GROUPINGS))}
        tables = timed("build every table", lambda: {
            table.name: table.build(results) for table in catalog.published_tables})
        print(f"  ({sum(len(rows) for rows in tables.values()):,} published rows)")
        timed("COPY text of every table", lambda: [
            postgres._copy_text(tables[table.name], table.columns) for table in catalog.published_tables])
        # The floor's aggregation on the same DataFrame: what the exact statistics cost on top.
        timed("floor-shaped aggregation, count()", lambda: readings_df.groupBy(
            "institute", "classroom", F.weekofyear("sendtime")).agg(
            *[F.sum(name) for name in METRIC_NAMES]).count())
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 2)
