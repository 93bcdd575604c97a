"""A Python interpreter that has the project's dependencies but cannot import `batch`.

The virtualenv has the package installed in editable mode (a `.pth` hook in site-packages
finds `batch` in the source tree), so a driver or an executor started with its Python would
import `batch` from there whatever `--py-files` ships. This interpreter is a fresh
virtualenv whose site-packages holds a single `.pth` line naming the project virtualenv's
site-packages: that folder joins sys.path, but `.pth` files inside it are not processed, so
pyspark, pandas, psycopg2, python-dotenv... import and `batch` does not - except from a zip
on sys.path, which is what `--py-files` puts there.
"""
from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path


def create_isolated_python(folder: Path) -> Path:
    """Create the interpreter in `folder` (once); returns the path of its `python3`."""
    python = folder / "bin" / "python3"
    if python.exists():
        return python
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip",
                    str(folder)], check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    site_packages = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, timeout=60).stdout.strip())
    (site_packages / "project-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def can_import(python: Path, module: str, extra_path: str = "") -> bool:
    """Whether `python` imports `module` (with `extra_path` prepended to sys.path)."""
    code = (f"import sys; sys.path.insert(0, {extra_path!r}); " if extra_path else "") + f"import {module}"
    return subprocess.run([str(python), "-c", code], capture_output=True, timeout=120,
                          stdin=subprocess.DEVNULL, cwd="/").returncode == 0
