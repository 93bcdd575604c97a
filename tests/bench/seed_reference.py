"""The seed-style reference: the straightforward analysis many projects ship (benchmark only).

    spark-submit --jars postgresql.jar seed_reference.py RAW_PATH JDBC_URL USER SCHEMA
    (password in $BENCH_POSTGRES_PASSWORD)

Read, cache, one groupBy(...).agg(...) per table with mean/min/max/stddev of the seven
metrics, each written with Spark's JDBC writer in overwrite mode and default options.
"""
from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

METRICS = ("temperature", "humidity", "co2", "tvoc", "pressure", "light_level", "battery")


def main(raw_path: str, url: str, user: str, schema: str) -> None:
    spark = SparkSession.builder.appName("bench-seed-reference").getOrCreate()
    # The seed reads with Spark's default schema merge: it cannot read files whose types
    # drift, so the benchmark input has one schema version per column (see run.py).
    df = (spark.read.option("mergeSchema", "true").parquet(raw_path)
          .withColumn("year", F.year("sendtime")).withColumn("week", F.weekofyear("sendtime"))
          .withColumn("month", F.month("sendtime")).cache())
    aggregates = [f(F.col(m)).alias(f"{m}_{name}") for m in METRICS
                  for name, f in (("mean", F.mean), ("min", F.min), ("max", F.max),
                                  ("stddev", F.stddev))]
    tables = {
        "seed_classroom_weekly": ("classroom", "institute", "year", "week"),
        "seed_weekly": ("year", "week"),
        "seed_classroom_monthly": ("classroom", "institute", "year", "month"),
    }
    properties = {"user": user, "password": os.environ["BENCH_POSTGRES_PASSWORD"],
                  "driver": "org.postgresql.Driver"}
    for table, keys in tables.items():
        (df.groupBy(*keys).agg(*aggregates)
         .write.jdbc(url, f"{schema}.{table}", mode="overwrite", properties=properties))
    spark.stop()


if __name__ == "__main__":
    main(*sys.argv[1:5])
