"""One run of a job, supervised: the same commands start, follow, wait for and stop it,
whether it runs on this machine or in the Spark container (standard library only: it is
copied into the container's run folder and run with its Python).

    python3 jobrun.py run [OPTIONS] -- COMMAND [ARG...]
        run COMMAND in a process group of its own and wait for it; pid in job.pid, exit code
        in job.exit; TERM, INT and HUP are passed on to the group
    python3 jobrun.py start [OPTIONS] -- COMMAND [ARG...]   the same, output in job.log
    python3 jobrun.py status    starting, running, exited CODE, or lost
    python3 jobrun.py wait      wait for the end of the job; exit with its exit code
    python3 jobrun.py stop      TERM the job's process group

Options: --folder DIR (the state files; default: this file's folder), --remove-folder
(delete it when the job ends), --pid-file FILE (removed when the job ends), --record FILE
(the exit code and end time, kept next to a background run's log). When the job ends its
secrets/ folder is deleted.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

NAME = "jobrun.py"
COMMAND_NOT_FOUND = 127  # batch.errors.EXIT_COMMAND_NOT_FOUND (not importable in the container)


def alive(pid: int | None) -> bool:
    """Whether process `pid` runs (the launcher asks this too: one answer for both)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A finished child of ours not yet reaped is a zombie: not running.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(text)
    os.replace(temporary, path)


def state(folder: Path) -> str:
    code = read_int(folder / "job.exit")
    if code is not None:
        return f"exited {code}"
    if alive(read_int(folder / "job.wrapper")):
        return "running" if (folder / "job.pid").exists() else "starting"
    return "lost" if (folder / "job.wrapper").exists() else "starting"


def _stop_group(folder: Path) -> None:
    pid = read_int(folder / "job.pid")
    if alive(pid):
        try:
            os.killpg(pid, signal.SIGTERM)
        except OSError:
            os.kill(pid, signal.SIGTERM)


def _find(command: str) -> str | None:
    if "/" in command:
        return command if os.access(command, os.X_OK) else None
    found = shutil.which(command)
    spark_home = os.environ.get("SPARK_HOME")
    if found is None and spark_home and os.access(os.path.join(spark_home, "bin", command), os.X_OK):
        found = os.path.join(spark_home, "bin", command)
    return found


def run(args: argparse.Namespace) -> int:
    folder: Path = args.folder
    for name in ("job.exit", "job.pid"):
        (folder / name).unlink(missing_ok=True)
    (folder / "job.wrapper").write_text(f"{os.getpid()}\n")
    stopping = False

    def on_signal(_number: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        _stop_group(folder)

    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, on_signal)
    command = args.command
    executable = _find(command[0]) if command else None
    if executable is None:
        spark_home = os.environ.get("SPARK_HOME")
        print(f"{NAME}: {command[0] if command else '(no command)'}: not found "
              f"(PATH={os.environ.get('PATH', '')}{f', SPARK_HOME={spark_home}' if spark_home else ''})",
              file=sys.stderr, flush=True)
        return _finish(args, COMMAND_NOT_FOUND)
    child = subprocess.Popen([executable, *command[1:]], start_new_session=True)
    (folder / "job.pid").write_text(f"{child.pid}\n")
    if stopping:
        _stop_group(folder)
    code = child.wait()
    return _finish(args, 128 - code if code < 0 else code)


def _finish(args: argparse.Namespace, code: int) -> int:
    folder: Path = args.folder
    shutil.rmtree(folder / "secrets", ignore_errors=True)
    _write_atomically(folder / "job.exit", f"{code}\n")
    if args.record:
        ended = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        _write_atomically(Path(args.record), f"exit_code={code}\nended={ended}\n")
    if args.pid_file and read_int(Path(args.pid_file)) == os.getpid():
        Path(args.pid_file).unlink(missing_ok=True)
    if args.remove_folder:
        shutil.rmtree(folder, ignore_errors=True)
    return code


def wait(folder: Path) -> int:
    waited = 0.0
    while True:
        current = state(folder)
        if current.startswith("exited "):
            return int(current.split()[1])
        if current == "lost":
            print(f"{NAME}: the job ended without leaving its exit code", file=sys.stderr)
            return 1
        if current == "starting" and waited >= 120:
            print(f"{NAME}: the job did not start", file=sys.stderr)
            return 1
        time.sleep(1)
        waited += 1


def stop(folder: Path) -> int:
    pid = read_int(folder / "job.pid")
    if pid is None:
        print(f"{NAME}: no job was started here", file=sys.stderr)
        return 1
    if alive(pid):
        _stop_group(folder)
        print(f"sent TERM to the job (process group {pid})")
    else:
        print(f"the job has already ended ({state(folder)})")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=NAME, description="One supervised run of a job.")
    parser.add_argument("action", choices=("run", "start", "status", "wait", "stop"))
    parser.add_argument("--folder", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--remove-folder", action="store_true")
    parser.add_argument("--pid-file", default="")
    parser.add_argument("--record", default="")
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.command = argv[split + 1:]
    if args.action == "start":
        log = os.open(args.folder / "job.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        sys.stdout = os.fdopen(1, "w", closefd=False)
        sys.stderr = os.fdopen(2, "w", closefd=False)
        return run(args)
    if args.action == "run":
        return run(args)
    if args.action == "status":
        print(state(args.folder))
        return 0
    return wait(args.folder) if args.action == "wait" else stop(args.folder)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
