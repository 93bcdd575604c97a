"""The raw-data download job (spark-downloader.py): rows.py which readings and in what order;
files.py the one file, written by Spark and renamed over the target; settings.py the options
and filters; job.py the run and its summary."""
