"""The first step of the doors (start-spark.sh, ...): make sure the virtualenv exists, then exec.

Run with the system's Python as a file (`python3 batch/launcher/bootstrap.py ...`), before
any dependency is installed: standard library only.

    bootstrap.py --project-root DIR JOB [ARGS...]   virtualenv with the production
        dependencies (`pip install -e .`), then `python -m batch.launcher` in it
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

EXIT_MISSING_PREREQUISITE = 3  # batch.errors.EXIT_INPUT, which cannot be imported yet


def venv_dir(project_root: Path) -> Path:
    return Path(os.environ.get("VENV_DIR") or project_root / ".venv")


def ensure_venv(project_root: Path, with_dev_extras: bool = False) -> Path:
    """The virtualenv's Python, installing the package first when pyproject.toml changed.

    A stamp file named after pyproject.toml's hash marks a finished install; one with the
    dev extras also serves a production run.
    """
    venv = venv_dir(project_root)
    digest = hashlib.sha256((project_root / "pyproject.toml").read_bytes()).hexdigest()[:16]
    dev_stamp, stamp = venv / f".installed-dev-{digest}", venv / f".installed-{digest}"
    python = venv / "bin" / "python"
    if dev_stamp.exists() or (stamp.exists() and not with_dev_extras):
        return python
    if not python.exists():
        print(f"Creating the virtualenv {venv} ...", file=sys.stderr)
        if subprocess.run([sys.executable, "-m", "venv", str(venv)]).returncode != 0:
            _die("cannot create a virtualenv: install python3-venv")
    log = venv / "install.log"
    what = f"{project_root}[dev]" if with_dev_extras else str(project_root)
    print(f"Installing the package and its dependencies into {venv} (log: {log}) ...", file=sys.stderr)
    with log.open("w") as output:
        for command in ([str(python), "-m", "pip", "install", "--upgrade", "pip"],
                        [str(python), "-m", "pip", "install", "-e", what]):
            if subprocess.run(command, stdout=output, stderr=subprocess.STDOUT).returncode != 0:
                sys.stderr.write("".join(log.read_text(errors="replace").splitlines(True)[-20:]))
                _die(f"installing the package into {venv} failed (see {log})")
    for old in venv.glob(".installed-*"):
        old.unlink()
    (dev_stamp if with_dev_extras else stamp).touch()
    return python


def _die(message: str) -> None:
    print(f"{Path(sys.argv[0]).name}: {message}", file=sys.stderr)
    sys.exit(EXIT_MISSING_PREREQUISITE)


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[0] != "--project-root":
        print("usage: bootstrap.py --project-root DIR JOB [ARGS...]", file=sys.stderr)
        sys.exit(2)
    project_root = Path(argv[1])
    python = ensure_venv(project_root)
    os.execv(str(python), [str(python), "-m", "batch.launcher", *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
