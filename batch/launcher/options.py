"""The launcher's own settings, resolved from env/spark.env and the environment as the jobs' are."""
from __future__ import annotations

from batch.core.config import COMMON_OPTIONS, ENV_FILE_VARIABLE, Option, settings_type

_SPARK_MASTER = next(option for option in COMMON_OPTIONS if option.env == "SPARK_MASTER")

# Settings of the launcher itself, resolved as the jobs resolve theirs.
LAUNCHER_OPTIONS: tuple[Option, ...] = (
    _SPARK_MASTER,
    Option("SPARK_DRIVER_MEMORY", "2g", "driver memory (spark-submit --driver-memory)"),
    Option("SPARK_EXECUTOR_PYTHON", "", "the executors' Python (empty: the virtualenv's)"),
    Option("LOG_DIR", "logs", "logs of background runs", path=True),
    Option("RUN_DIR", "run", "pid files of background runs", path=True),
    Option("SPARK_MASTER_CONTAINER", "spark-master", "container that runs spark-submit"),
    Option("SPARK_MASTER_URL", "spark://spark-master:7077", "master, from that container"),
    Option("DOCKER_CMD", "docker", "the docker command"),
    Option("SPARK_CONTAINER_WORKDIR", "/tmp/indoor-air-batch", "run folders in the container"),
    Option("SPARK_CONTAINER_SUBMIT", "spark-submit", "spark-submit in the container"),
    Option("SPARK_CONTAINER_PYTHON", "python3", "Python in the container"),
)
LauncherSettings = settings_type("LauncherSettings", LAUNCHER_OPTIONS)

# Settings of the launcher, not of the job: never passed into the container (the password
# file is passed on its own terms, see batch/launcher/docker.py _container_environment).
LAUNCHER_ONLY_VARIABLES = frozenset(
    {ENV_FILE_VARIABLE, "POSTGRES_PASSWORD_FILE"}
    | {option.env for option in LAUNCHER_OPTIONS})
