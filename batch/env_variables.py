"""Every variable an env file may set: one env file serves both jobs and their launchers, so a
variable none of them reads is a misspelt name, which batch.core.cli.load warns about (given
by the jobs' entry scripts and the launcher: batch.core cannot import the jobs)."""
from __future__ import annotations

from batch.core.config import ENV_FILE_VARIABLE


def known_variables() -> set[str] | None:
    """None where the launcher is not shipped (the job's copy that spark-submit runs in the
    Spark container): the launcher checked the env file before starting it."""
    try:
        from batch.launcher.launch import LAUNCHER_OPTIONS
    except ImportError:
        return None
    from batch.analysis.job import ANALYSIS_OPTIONS
    from batch.download.settings import DOWNLOADER_OPTIONS

    return ({option.env for option in (*ANALYSIS_OPTIONS, *DOWNLOADER_OPTIONS, *LAUNCHER_OPTIONS)}
            | {ENV_FILE_VARIABLE})
