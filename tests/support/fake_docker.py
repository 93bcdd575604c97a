"""A stand-in for the `docker` command, for testing the launchers' docker mode without an engine.

Tests put an executable named `docker` that runs this file first on PATH (`install`), and
describe the containers in FAKE_DOCKER_DIR/containers.json:

    {"spark-master": {"running": true, "root": "/tmp/x/fs", "env": {"PATH": "...", ...}}}

A container's file system is the folder `root`. Supported, as docker does them:
- `inspect --format '{{.State.Running}}' NAME`, `ps [--filter name=NAME] --format '{{.Names}}'`;
- `cp SRC NAME:PATH` and `cp NAME:PATH DEST` (file or folder; into an existing folder, or as
  a new entry whose parent must exist);
- `exec [-d] [-e NAME[=VALUE]]... [-w DIR] [-u USER] NAME COMMAND...`: COMMAND runs on this
  machine in the folder `root` + DIR, with the container's `env` plus the -e variables only
  (a bare NAME takes its value from this process's environment, as docker does). So paths
  in COMMAND must be relative to DIR: anything else would reach this machine's own files.
  -d starts it detached and returns at once.

Every call is appended to FAKE_DOCKER_DIR/calls.jsonl as its argument list (values given
with `-e NAME` are not in it, as they are not on docker's command line). Failures to inject
are listed in FAKE_DOCKER_DIR/fail.json: "cp-in", "cp-out" (or "cp-out:PATTERN", for the
container paths matching it), "exec".
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, NoReturn

STATE_VARIABLE = "FAKE_DOCKER_DIR"


def install(bin_dir: Path) -> Path:
    """Write the `docker` executable into `bin_dir`; returns its path."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    executable = bin_dir / "docker"
    executable.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" "$@"\n')
    executable.chmod(0o755)
    return executable


def write_containers(state_dir: Path, containers: dict[str, dict[str, Any]]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "containers.json").write_text(json.dumps(containers, indent=2))


def set_failures(state_dir: Path, *failures: str) -> None:
    (state_dir / "fail.json").write_text(json.dumps(list(failures)))


def recorded_calls(state_dir: Path) -> list[list[str]]:
    path = state_dir / "calls.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


# --- the command ---------------------------------------------------------------------------

def _fail(message: str, code: int = 1) -> NoReturn:
    print(message, file=sys.stderr)
    sys.exit(code)


def _state_dir() -> Path:
    value = os.environ.get(STATE_VARIABLE)
    if not value:
        _fail(f"fake docker: {STATE_VARIABLE} is not set")
    return Path(value)


def _containers(state: Path) -> dict[str, dict[str, Any]]:
    return json.loads((state / "containers.json").read_text())


def _failures(state: Path) -> list[str]:
    path = state / "fail.json"
    return json.loads(path.read_text()) if path.exists() else []


def _container(state: Path, name: str, running: bool = False) -> dict[str, Any]:
    containers = _containers(state)
    if name not in containers:
        _fail(f"Error response from daemon: No such container: {name}")
    if running and not containers[name]["running"]:
        _fail(f"Error response from daemon: container {name} is not running")
    return containers[name]


def _inside(container: dict[str, Any], path: str) -> Path:
    if not path.startswith("/"):
        _fail(f"Error response from daemon: the path {path} in the container is not absolute")
    return Path(container["root"]) / path.lstrip("/")


def inspect(state: Path, args: list[str]) -> None:
    names = [arg for index, arg in enumerate(args)
             if not arg.startswith("-") and (index == 0 or args[index - 1] not in ("--format", "-f", "--type"))]
    for name in names:
        containers = _containers(state)
        if name not in containers:
            _fail(f"Error: No such object: {name}")
        print("true" if containers[name]["running"] else "false")


def ps(state: Path, args: list[str]) -> None:
    wanted = next((arg.split("=", 1)[1] for arg in args if arg.startswith("name=")), None)
    for name, container in _containers(state).items():
        if container["running"] and (wanted is None or wanted.strip("^$/") == name):
            print(name)


def _copy(source: Path, destination: Path, shown_source: str, shown_destination: str) -> None:
    if not source.exists():
        _fail(f"Error response from daemon: Could not find the file {shown_source}")
    if destination.is_dir():
        destination = destination / source.name
    elif not destination.parent.is_dir():
        _fail(f"Error response from daemon: the parent folder of {shown_destination} does not exist")
    if source.is_dir():
        shutil.copytree(source, destination, symlinks=True, dirs_exist_ok=True)
    else:
        shutil.copy2(source, destination)


def cp(state: Path, args: list[str]) -> None:
    paths = [arg for arg in args if not arg.startswith("-")]
    if len(paths) != 2:
        _fail('"docker cp" requires exactly 2 arguments')
    source, destination = paths
    if ":" in destination and not destination.startswith("/"):
        name, inner = destination.split(":", 1)
        if "cp-in" in _failures(state):
            _fail(f"Error response from daemon: (fake) cannot copy into {name}")
        _copy(Path(source), _inside(_container(state, name), inner), source, destination)
    elif ":" in source and not source.startswith("/"):
        name, inner = source.split(":", 1)
        if any(failure == "cp-out" or (failure.startswith("cp-out:") and fnmatch(inner, failure[7:]))
               for failure in _failures(state)):
            _fail(f"Error response from daemon: (fake) cannot copy {inner} out of {name}")
        _copy(_inside(_container(state, name), inner), Path(destination), source, destination)
    else:
        _fail("copying between two local paths is not supported")


def exec_(state: Path, args: list[str]) -> None:
    detach, workdir, variables = False, "/", {}
    index = 0
    while index < len(args) and args[index].startswith("-"):
        option = args[index]
        if option in ("-d", "--detach"):
            detach = True
        elif option in ("-i", "-t", "-it", "-ti", "--interactive", "--tty"):
            pass  # recorded in calls.jsonl: the tests refuse them on non-interactive paths
        elif option in ("-e", "--env", "-w", "--workdir", "-u", "--user"):
            index += 1
            value = args[index]
            if option in ("-e", "--env"):
                name, has_value, given = value.partition("=")
                if has_value:
                    variables[name] = given
                elif name in os.environ:
                    variables[name] = os.environ[name]
            elif option in ("-w", "--workdir"):
                workdir = value
        else:
            _fail(f"fake docker exec: unsupported option {option}")
        index += 1
    if index >= len(args) - 1:
        _fail('"docker exec" requires at least 2 arguments')
    container = _container(state, args[index], running=True)
    command = args[index + 1:]
    if "exec" in _failures(state):
        _fail("Error response from daemon: (fake) exec failed", 126)
    cwd = _inside(container, workdir)
    if not cwd.is_dir():
        _fail(f"OCI runtime exec failed: chdir to cwd (\"{workdir}\") set in config.json failed: "
              "no such file or directory", 126)
    environment = {**container.get("env", {}), **variables}
    executable = shutil.which(command[0], path=environment.get("PATH", os.defpath)) \
        if "/" not in command[0] else command[0]
    if executable is None:
        _fail(f'OCI runtime exec failed: exec: "{command[0]}": executable file not found in $PATH', 127)
    if detach:
        subprocess.Popen([executable, *command[1:]], cwd=cwd, env=environment, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        return
    os.chdir(cwd)
    os.execve(executable, command, environment)


def main(argv: list[str]) -> None:
    state = _state_dir()
    with open(state / "calls.jsonl", "a", encoding="utf-8") as calls:
        calls.write(json.dumps(argv) + "\n")
    if not argv:
        _fail("usage: docker COMMAND")
    commands = {"inspect": inspect, "ps": ps, "cp": cp, "exec": exec_}
    if argv[0] not in commands:
        _fail(f"fake docker: unsupported command {argv[0]}")
    commands[argv[0]](state, argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
