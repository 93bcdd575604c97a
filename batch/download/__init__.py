"""The raw-data download job (spark-downloader.py): filters, order, one file.

- filters.py: which readings (profile, institute, classroom, time window) and the checks of
  the values asked for;
- rows.py: the DataFrame steps of a download: the columns read, the order, --clean;
- files.py: Spark's ordered parts joined into one file, replaced atomically;
- sweep.py: what downloads killed outright left beside their target;
- settings.py: the job's options, filters and checks before Spark starts;
- job.py: the job's run and its summary.
"""
