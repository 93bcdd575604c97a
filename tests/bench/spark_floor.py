"""The Spark floor (benchmark only): the least work any Spark analysis of these columns does.

    spark-submit spark_floor.py RAW_PATH

One scan of exactly the columns the analysis reads, one groupBy at the classroom-and-week
grain with one sum per metric, count().
"""
from __future__ import annotations

import sys

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

METRICS = ("temperature", "humidity", "co2", "tvoc", "pressure", "light_level", "battery")


def main(raw_path: str) -> None:
    spark = SparkSession.builder.appName("bench-spark-floor").getOrCreate()
    df = spark.read.option("mergeSchema", "true").parquet(raw_path).select(
        "DevEui", "sendtime", "institute", "classroom", *METRICS)
    groups = (df.groupBy("institute", "classroom", F.weekofyear("sendtime").alias("week"))
              .agg(*[F.sum(m).alias(m) for m in METRICS]).count())
    print(f"floor groups: {groups}")
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1])
