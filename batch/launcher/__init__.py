"""The launchers of the jobs (start-spark.sh, spark-downloader.sh): not job code.

Never shipped to the executors (the --py-files zip holds the job modules of batch/ only).
bootstrap.py and jobrun.py use the standard library only: the first runs before the
virtualenv exists, the second runs in the Spark container too.
"""
