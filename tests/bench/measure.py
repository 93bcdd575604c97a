"""Measuring a benchmark run (by hand, never in CI): wall and CPU time, and peak memory of a process tree.

/proc is sampled every SAMPLE_INTERVAL_S for the peak memory of the tree's JVM and Python
processes (sum of PSS), the peak RSS of each kind, and the peak RSS of the PySpark driver
alone (the Python process spark-submit's JVM starts, not its workers nor a launcher).
Reading smaps_rollup is not free: sampled too often it takes CPU from the job being measured.
"""
from __future__ import annotations

import os
import subprocess
import threading
import time
from datetime import date
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_INTERVAL_S = 0.25
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def _memory_kib(pid: int) -> tuple[int, int, str]:
    """(RSS, PSS, command name) of `pid`; zeros once it is gone.

    The tree's total is a sum of PSS, so that pages the JVM and Python share count once.
    """
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as handle:
            resident = int(handle.read().split()[1]) * PAGE_KIB
        proportional = resident
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    proportional = int(line.split()[1])
                    break
        with open(f"/proc/{pid}/comm", encoding="ascii", errors="replace") as handle:
            return resident, proportional, handle.read().strip()
    except (OSError, IndexError, ValueError):
        return 0, 0, ""


def _is_pyspark_worker(pid: int) -> bool:
    """A Python process of PySpark's executors (local mode: children of the JVM like the driver)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            command = handle.read()
    except OSError:
        return True
    return b"pyspark.daemon" in command or b"pyspark.worker" in command


class TreeMemorySampler(threading.Thread):
    """Peak memory of a process tree's JVM and Python processes (sum of PSS), peak RSS of each
    kind and of the PySpark driver."""

    def __init__(self, root_pid: int) -> None:
        super().__init__(daemon=True)
        self.root_pid = root_pid
        self.peak_tree_kib = self.peak_jvm_kib = self.peak_python_kib = self.peak_driver_kib = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            tree = _children()
            pending, total, jvm, python, driver = [(self.root_pid, "")], 0, 0, 0, 0
            while pending:
                pid, parent = pending.pop()
                resident, proportional, name = _memory_kib(pid)
                # Only the long-lived members: children the JVM forks for a moment (chmod,
                # bash) share its pages and would be counted twice by a sampler that cannot
                # read the whole tree at one instant.
                if name == "java":
                    jvm += resident
                    total += proportional
                elif name.startswith("python"):
                    python += resident
                    total += proportional
                    if parent == "java" and not _is_pyspark_worker(pid):
                        driver += resident
                pending += [(child, name) for child in tree.get(pid, [])]
            self.peak_tree_kib = max(self.peak_tree_kib, total)
            self.peak_jvm_kib = max(self.peak_jvm_kib, jvm)
            self.peak_python_kib = max(self.peak_python_kib, python)
            self.peak_driver_kib = max(self.peak_driver_kib, driver)
            self._stop_event.wait(SAMPLE_INTERVAL_S)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def run_sampled(variant: str, command: list[str], env: dict[str, str],
                log_path: Path) -> tuple[float, float, TreeMemorySampler]:
    """Run `command` to its end, logging to `log_path`: wall seconds, CPU seconds, peak memory."""
    with open(log_path, "w", encoding="utf-8") as log:
        started = time.monotonic()
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=PROJECT_ROOT)
        sampler = TreeMemorySampler(process.pid)
        sampler.start()
        # wait4: the CPU time of the JVM and of the Python driver it waited for.
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.monotonic() - started
        process.returncode = code = os.waitstatus_to_exitcode(status)
        sampler.stop()
    if code != 0:
        raise SystemExit(f"{variant} failed with exit code {code}; see {log_path}")
    return seconds, usage.ru_utime + usage.ru_stime, sampler


def ensure_input(workdir: Path, rows: int) -> Path:
    from devtools.demo import ensure_demo_dataset

    raw_path = workdir / f"raw-{rows}"
    started = time.monotonic()
    # The benchmark's demo shape: 104 devices over a school year (the demo itself is a term).
    info = ensure_demo_dataset(raw_path, readings=rows, start=date(2024, 9, 2), days=365)
    print(f"input: {info.readings:,} readings in {len(info.files)} files at {raw_path} "
          f"({time.monotonic() - started:.0f} s to ensure)", flush=True)
    return raw_path


def extract_commit(revision: str, workdir: Path) -> Path:
    """The project's files at `revision`, extracted once into `workdir` (no worktree touched)."""
    commit = subprocess.run(["git", "rev-parse", "--short", revision], cwd=PROJECT_ROOT,
                            check=True, capture_output=True, text=True).stdout.strip()
    tree = workdir / f"tree-{commit}"
    extracted = tree / ".extracted"
    if not extracted.is_file():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", commit], cwd=PROJECT_ROOT, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        extracted.write_text(commit + "\n")
    return tree
