"""One run of a job, supervised: the same commands start, follow, wait for and stop it,
whether it runs on this machine or in the Spark container (standard library only: it is
copied into the container's run folder and run with its Python).

    jobrun.py run [OPTIONS] -- COMMAND [ARG...]   run COMMAND in this wrapper's process
        group (its pid is the group's id) until every process of the group has ended; pid
        in job.pid, exit code in job.exit (128 + the signal of a stop passed on)
    jobrun.py start [OPTIONS] -- COMMAND [ARG...]   the same, output in job.log
    jobrun.py status | wait | stop   starting, running, exited CODE or lost | wait for the
        end of the job, exit with its exit code | TERM the job's process group

Options: --folder DIR (the state files; default: this file's folder), --remove-folder
(delete it when the job ends), --pid-file FILE (removed when the job ends), --record FILE
(the exit code and end time). When the job ends its secrets/ folder is deleted.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

try:
    from batch.core.atomic_file import write_atomically
    from batch.core.errors import EXIT_COMMAND_NOT_FOUND
except ImportError:  # in the Spark container, where atomic_file.py and errors.py are copied beside this file
    from atomic_file import write_atomically  # type: ignore[no-redef]
    from errors import EXIT_COMMAND_NOT_FOUND  # type: ignore[no-redef]

NAME = "jobrun.py"
# The stops a supervisor passes on to the job's process group (batch.core.cli records them).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# The job's driver stops itself when this process ends without passing a stop on (a kill -9
# of the printed pid): batch.core.cli.SUPERVISOR_VARIABLE.
SUPERVISOR_VARIABLE = "BATCH_SUPERVISOR_PID"


def _reaches(send: Callable[[int, int], None], target: int) -> bool:
    """Whether signal 0 sent with `send` (os.kill, os.killpg) finds `target`."""
    try:
        send(target, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _stat(pid: int | str) -> list[str] | None:
    """/proc/PID/stat after the name: state, parent, process group, ...; None if unreadable."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid: int | None) -> bool:
    """Whether process `pid` runs (the launcher asks this too: one answer for both)."""
    if not pid or not _reaches(os.kill, pid):
        return False
    # A finished child of ours not yet reaped is a zombie: not running.
    fields = _stat(pid)
    return fields is None or fields[0] != "Z"


def group_alive(group: int | None, besides: int | None = None) -> bool:
    """Whether a process of process group `group` runs, `besides` (a pid) left out."""
    if not group:
        return False
    try:
        entries = [entry for entry in os.listdir("/proc") if entry.isdigit()]
    except OSError:  # no /proc: ask the kernel about the group as a whole
        return _reaches(os.killpg, group)
    for entry in entries:
        fields = _stat(entry)  # None: ended meanwhile
        if fields is not None and int(fields[2]) == group and fields[0] != "Z" and int(entry) != besides:
            return True
    return False


def job_alive(supervisor: int | None) -> bool:
    """Whether the job a supervisor (the pid printed) leads still runs: the supervisor
    itself, or, once it has been killed, any process of its group."""
    return alive(supervisor) or group_alive(supervisor)


def read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


class Supervisor:
    """Runs a job's command in a process group and stays until the whole group has ended;
    TERM, INT and HUP sent to it go to the whole group. Why the command starts with them
    ignored, and how the driver watches its supervisor: docs/reliability.md."""

    def __init__(self) -> None:
        self.stop_signal: int | None = None
        self.group: int | None = None
        self._forwarded: set[int] = set()
        for number in STOP_SIGNALS:
            signal.signal(number, self._on_signal)

    def _on_signal(self, number: int, _frame: object = None) -> None:
        if self.stop_signal is None:
            self.stop_signal = number
        # Once per signal: in its own group the supervisor gets what it forwards.
        if self.group is None or number in self._forwarded:
            return
        self._forwarded.add(number)
        try:
            os.killpg(self.group, number)
        except ProcessLookupError:
            pass

    def start(self, command: Sequence[str], environ: Mapping[str, str], *, new_group: bool,
              **popen: object) -> subprocess.Popen[bytes]:
        """Start `command` in a session (and process group) of its own, or in the
        supervisor's group (which the supervisor leads)."""
        environ = {**environ, SUPERVISOR_VARIABLE: str(os.getpid())}
        # A session, not just a group: a terminal's job control leaves the job alone (no
        # SIGTTOU for the progress bar); its Ctrl-C reaches the supervisor, which passes it on.
        child = subprocess.Popen(list(command), env=environ, start_new_session=new_group,
                                 preexec_fn=_ignore_stop_signals, **popen)  # type: ignore[call-overload]
        self.group = child.pid if new_group else os.getpgrp()
        if self.stop_signal is not None:  # a stop that came while the job was starting
            self._on_signal(self.stop_signal)
        return child

    def wait(self, child: subprocess.Popen[bytes]) -> int:
        """The job's exit code once every process of its group has ended; 128 + the signal
        when a stop was passed on."""
        code = child.wait()
        # The driver may outlive spark-submit (the JVM ends at once on a TERM): wait for it.
        while group_alive(self.group, besides=os.getpid()):
            time.sleep(0.1)
        if self.stop_signal is not None:
            return 128 + self.stop_signal
        return 128 - code if code < 0 else code


def _ignore_stop_signals() -> None:
    # In the child, before it execs spark-submit; the driver installs its own handlers.
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN)


def state(folder: Path) -> str:
    code = read_int(folder / "job.exit")
    if code is not None:
        return f"exited {code}"
    if alive(read_int(folder / "job.wrapper")):
        return "running" if (folder / "job.pid").exists() else "starting"
    return "lost" if (folder / "job.wrapper").exists() else "starting"


def run(args: argparse.Namespace) -> int:
    folder: Path = args.folder
    for name in ("job.exit", "job.pid"):
        (folder / name).unlink(missing_ok=True)
    if os.getpgrp() != os.getpid():
        os.setpgid(0, 0)  # the job's process group is this wrapper's: its pid is the group's id
    write_atomically(folder / "job.wrapper", f"{os.getpid()}\n")
    supervisor = Supervisor()
    command, spark_home = args.command, os.environ.get("SPARK_HOME")
    # Some Spark images have spark-submit in $SPARK_HOME/bin only, not on PATH.
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *([f"{spark_home}/bin"] if spark_home else [])])
    executable = shutil.which(command[0], path=search) if command else None
    if executable is None:
        print(f"{NAME}: {command[0] if command else '(no command)'}: not found "
              f"(PATH={os.environ.get('PATH', '')}{f', SPARK_HOME={spark_home}' if spark_home else ''})",
              file=sys.stderr, flush=True)
        code = EXIT_COMMAND_NOT_FOUND
    else:
        child = supervisor.start([executable, *command[1:]], os.environ, new_group=False)
        write_atomically(folder / "job.pid", f"{child.pid}\n")
        code = supervisor.wait(child)
    shutil.rmtree(folder / "secrets", ignore_errors=True)
    write_atomically(folder / "job.exit", f"{code}\n")
    if args.record:
        ended = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        write_atomically(Path(args.record), f"exit_code={code}\nended={ended}\n")
    if args.pid_file and read_int(Path(args.pid_file)) == os.getpid():
        Path(args.pid_file).unlink(missing_ok=True)
    if args.remove_folder:
        shutil.rmtree(folder, ignore_errors=True)
    return code


def wait(folder: Path) -> int:
    waited = 0
    while not (current := state(folder)).startswith("exited "):
        if current == "lost" or (current == "starting" and waited >= 120):
            why = "ended without leaving its exit code" if current == "lost" else "did not start"
            print(f"{NAME}: the job {why}", file=sys.stderr)
            return 1
        time.sleep(1)
        waited += 1
    return int(current.split()[1])


def stop(folder: Path) -> int:
    pid = read_int(folder / "job.pid")
    if pid is None:
        print(f"{NAME}: no job was started here", file=sys.stderr)
        return 1
    if not alive(pid):
        print(f"the job has already ended ({state(folder)})")
        return 0
    try:
        os.killpg(os.getpgid(pid), signal.SIGTERM)
    except OSError:
        os.kill(pid, signal.SIGTERM)
    print(f"sent TERM to the job (process group {pid})")
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
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        sys.stdout = os.fdopen(1, "w", closefd=False)
        sys.stderr = os.fdopen(2, "w", closefd=False)
    if args.action in ("run", "start"):
        return run(args)
    if args.action == "status":
        print(state(args.folder))
        return 0
    return wait(args.folder) if args.action == "wait" else stop(args.folder)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
