"""What both job entry points share: settings from argv, logging, reporting, exit codes."""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pyspark import SparkConf

from batch.config import Option, build_parser, default_env_file, resolve_options, settings_from
from batch.errors import BatchError

log = logging.getLogger("batch")


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    # py4j logs every gateway round trip at INFO.
    logging.getLogger("py4j").setLevel(logging.WARNING)


def load_settings(settings_class: type, options: Sequence[Option], prog: str, description: str,
                  argv: Sequence[str], project_root: Path) -> Any:
    """Parse `argv` (exit 2 on unknown options) and resolve every option into `settings_class`."""
    args = build_parser(prog, description, options).parse_args(argv)
    env_file = args.env_file or default_env_file(project_root)
    if args.env_file is None and not env_file.is_file():
        env_file = None  # Running without any env file is allowed: defaults and environment.
    values = resolve_options(options, vars(args), os.environ, env_file)
    settings = settings_from(settings_class, values)
    if args.check_config:
        print(f"{prog}: configuration OK")
        sys.exit(0)
    return settings


def spark_master_unless_submitted(master: str) -> str | None:
    """The master to set ourselves: none when spark-submit already chose one."""
    return None if SparkConf().contains("spark.master") else master


def write_json_atomically(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.",
                                     delete=False, encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True, default=str)
        handle.write("\n")
    os.replace(handle.name, path)


def format_summary(title: str, summary: Mapping[str, Any]) -> str:
    """A human-readable block: scalars first, then one indented line per entry of each mapping."""
    lines = [f"==== {title} ===="]
    for key, value in summary.items():
        if isinstance(value, Mapping):
            lines.append(f"{key}:")
            # None inside a mapping: not measured by this run (e.g. replays when not dropped).
            lines += [f"    {name:<28} {'not checked' if item is None else item}"
                      for name, item in value.items()]
        elif isinstance(value, list):
            lines.append(f"{key}: {', '.join(map(str, value)) if value else 'none'}")
        elif value is not None:
            lines.append(f"{key}: {value}")
    return "\n".join(lines)


def run_and_report(spark: Any, title: str, run: Callable[[], object],
                   report: Callable[[], Mapping[str, Any]], summary_json: str) -> int:
    """Run a job's body, then print its summary (and write it as JSON when asked), stop Spark.

    Ctrl-C and SIGTERM (kill, a stopping container) raise KeyboardInterrupt, so that the job
    unwinds: Spark jobs cancelled, temporary files removed, the run recorded as failed.
    PySpark's own SIGINT handler is replaced: it calls the JVM from inside the interrupted
    JVM call, which breaks the gateway connection instead of stopping the job.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        run()
    finally:
        data = report()
        print(format_summary(title, data), flush=True)
        if summary_json:
            write_json_atomically(Path(summary_json), data)
        spark.stop()
    return 0


def run_main(main: Callable[[], int]) -> None:
    """Run a job's main; a BatchError is reported in one line with its exit code, no traceback."""
    configure_logging()
    try:
        code = main()
    except BatchError as error:
        log.error("%s", error)
        code = error.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        code = 130
    sys.exit(code)
