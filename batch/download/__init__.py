"""The raw-data download job (spark-downloader.py): filters, order, one file.

- filters.py: which readings (profile, institute, classroom, time window) and the checks of
  the values asked for;
- rows.py: the DataFrame steps of a download: the columns read, the order, --clean;
- files.py: the single file, from Spark's ordered parts, replaced atomically;
- parts.py: the parts brought back in order and joined (CSV bytes, Parquet row groups);
- sweep.py: what downloads killed outright left beside their target;
- settings.py: the job's options, filters and checks before Spark starts;
- job.py: the job's run and its summary.
"""
