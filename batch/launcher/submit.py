"""Pure builders of the launchers' command lines (spark-submit, docker exec), and the zip.

No secret is ever on these command lines: values travel by environment (docker exec -e
NAME takes the value from docker's own environment) or by file.
"""
from __future__ import annotations

import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path


def spark_submit_argv(*, submit: str, master: str, job_name: str, driver_memory: str,
                      show_progress: bool, log4j_config: str, py_files: str, entry: str,
                      executor_python: str = "", job_args: Sequence[str] = ()) -> list[str]:
    python_args = ["--conf", f"spark.pyspark.python={executor_python}"] if executor_python else []
    return [submit, "--master", master, "--name", f"indoor-air-{job_name}",
            "--driver-memory", driver_memory,
            "--conf", f"spark.ui.showConsoleProgress={'true' if show_progress else 'false'}",
            "--conf", f"spark.driver.extraJavaOptions=-Duser.timezone=UTC -Dlog4j2.configurationFile={log4j_config}",
            "--conf", "spark.executor.extraJavaOptions=-Duser.timezone=UTC",
            *python_args, "--py-files", py_files, entry, *job_args]


def docker_exec_argv(docker: Sequence[str], container: str, command: Sequence[str], *,
                     workdir: str = "", environment: Iterable[str] = (), user: str = "",
                     detach: bool = False) -> list[str]:
    """`docker exec` without -i/-t (never interactive); `environment` are NAMEs or -e values."""
    options = ["-d"] if detach else []
    for name in environment:
        options += ["-e", name]
    if user:
        options += ["-u", user]
    if workdir:
        options += ["-w", workdir]
    return [*docker, "exec", *options, container, *command]


def container_job_args(job_args: Sequence[str], *, env_file_given: bool,
                       output_flag: str = "", output_name: str = "") -> list[str]:
    """The job's arguments in the container's run folder: the summary, env file and output
    there (the launcher copies the summary and output out to the paths asked for)."""
    moved = {"--summary-json": "summary.json", "--env-file": "env/spark.env" if env_file_given else None,
             output_flag: f"output/{output_name}" if output_flag else None}
    args: list[str] = []
    skip = False
    for arg in job_args:
        option = arg.split("=", 1)[0]
        if skip:
            skip = False
        elif moved.get(option) is None:
            args.append(arg)
        else:
            skip = arg == option  # `--x v`: v is dropped too; `--x=v` alone
    for option, value in moved.items():
        if value is not None:
            args += [option, value]
    return args


def passed_variable_names(exported: Iterable[str], documented: Iterable[str],
                          launcher_only: Iterable[str]) -> list[str]:
    """The job's variables set in the launcher's environment, to pass by name (-e NAME)."""
    return sorted((set(exported) & set(documented)) - set(launcher_only))


def build_py_files_zip(package: Path, target: Path) -> Path:
    """The job package `package` (batch/), launcher excluded, as the zip --py-files ships.

    Its package data (the run report's template) goes along: spark-submit puts the zip ahead
    of the virtualenv, so the job imports batch from it.
    """
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for source in sorted([*package.rglob("*.py"), *package.rglob("*.j2")]):
            relative = source.relative_to(package)
            # The launcher is not job code: never shipped to the executors.
            if "__pycache__" not in relative.parts and relative.parts[0] != "launcher":
                archive.write(source, Path(package.name, relative).as_posix())
    return target
