"""A real Spark standalone cluster (one master, one worker) for integration tests.

Both daemons come from the installed pyspark (`<pyspark>/bin/spark-class`), bind to 127.0.0.1
and run in their own process groups, so stopping kills them and the executors they started.

    with SparkStandalone(tmp_path) as cluster:
        result = cluster.submit(script, py_files=[zip_path])
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import pyspark

SPARK_HOME = Path(pyspark.__file__).resolve().parent
_PR_SET_PDEATHSIG = 1
# Looked up here, not in the forked child, where dlopen could block on a lock held by a thread.
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    # Runs in the child before exec: SIGTERM it if the test process dies without cleaning up.
    # Survives the exec chain spark-class -> java, which keeps the same pid.
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _stop_group(proc: subprocess.Popen[Any], grace: float = 15.0) -> None:
    """SIGTERM the process group led by `proc`, SIGKILL it after `grace` seconds."""
    if proc.poll() is None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
    # The leader may be gone while group members (e.g. executors) linger.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


class SparkStandalone:
    """Master + one worker on 127.0.0.1; `master_url` is `spark://127.0.0.1:PORT`.

    Logs go to `workdir/master.log` and `workdir/worker.log`; executor work dirs (their
    stdout/stderr) to `workdir/worker/`.
    """

    def __init__(
        self,
        workdir: Path,
        cores: int = 2,
        memory: str = "2g",
        startup_timeout: float = 120.0,
    ) -> None:
        self.workdir = Path(workdir)
        self.cores = cores
        self.memory = memory
        self.startup_timeout = startup_timeout
        self.webui_url = ""
        self._master_url: str | None = None
        self._procs: list[subprocess.Popen[bytes]] = []

    @property
    def master_url(self) -> str:
        if self._master_url is None:
            raise RuntimeError("SparkStandalone is not running")
        return self._master_url

    def __enter__(self) -> SparkStandalone:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """Environment for the daemons and spark-submit: this venv's Python, loopback only."""
        return {
            **os.environ,
            "SPARK_HOME": str(SPARK_HOME),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOG_DIR": str(self.workdir),
            "SPARK_DAEMON_MEMORY": "512m",
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
        }

    def start(self) -> None:
        if self._procs:
            raise RuntimeError("SparkStandalone already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        webui_port = free_port()
        self.webui_url = f"http://127.0.0.1:{webui_port}"
        deadline = time.monotonic() + self.startup_timeout
        try:
            # RPC port 0: the master picks a free one and reports it in its JSON status.
            self._spawn(
                "master",
                "org.apache.spark.deploy.master.Master",
                "--host", "127.0.0.1", "--port", "0", "--webui-port", str(webui_port),
            )
            status = self._wait_for(lambda s: s.get("status") == "ALIVE", deadline, "master ALIVE")
            self._master_url = str(status["url"])
            self._spawn(
                "worker",
                "org.apache.spark.deploy.worker.Worker", self._master_url,
                "--host", "127.0.0.1", "--port", "0", "--webui-port", "0",
                "--cores", str(self.cores), "--memory", self.memory,
                "--work-dir", str(self.workdir / "worker"),
            )
            self._wait_for(
                lambda s: any(w.get("state") == "ALIVE" for w in s.get("workers", [])),
                deadline, "one ALIVE worker",
            )
        except BaseException:
            self.stop()
            raise

    def _spawn(self, name: str, main_class: str, *args: str) -> None:
        with open(self.workdir / f"{name}.log", "wb") as log:
            self._procs.append(
                subprocess.Popen(
                    [str(SPARK_HOME / "bin" / "spark-class"), main_class, *args],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env=self.env(), start_new_session=True, preexec_fn=_die_with_parent,
                )
            )

    def status(self) -> dict[str, Any]:
        """The master's JSON status page."""
        with urllib.request.urlopen(f"{self.webui_url}/json", timeout=5) as resp:
            return dict(json.load(resp))

    def _wait_for(
        self, ready: Callable[[dict[str, Any]], bool], deadline: float, what: str
    ) -> dict[str, Any]:
        while time.monotonic() < deadline:
            for proc in self._procs:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"Spark daemon {proc.args!r} exited with {proc.returncode} while "
                        f"waiting for {what}; logs in {self.workdir}"
                    )
            try:
                status = self.status()
                if ready(status):
                    return status
            except (urllib.error.URLError, OSError, ValueError):
                pass  # web UI not up yet
            time.sleep(0.5)
        raise TimeoutError(
            f"Spark standalone: no {what} at {self.webui_url} within "
            f"{self.startup_timeout:.0f}s; logs in {self.workdir}"
        )

    def stop(self) -> None:
        # Worker first (it takes its executors down), then the master.
        procs, self._procs, self._master_url = self._procs, [], None
        for proc in reversed(procs):
            _stop_group(proc)

    def submit(
        self,
        app: Path,
        *app_args: str,
        py_files: Sequence[Path] = (),
        conf: Mapping[str, str] | None = None,
        timeout: float = 300.0,
    ) -> subprocess.CompletedProcess[str]:
        """spark-submit `app` in client mode; returns captured output whatever the exit code."""
        settings = {
            "spark.ui.enabled": "false",
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.executor.memory": "1g",
            **(conf or {}),
        }
        cmd = [str(SPARK_HOME / "bin" / "spark-submit"), "--master", self.master_url]
        for key, value in settings.items():
            cmd += ["--conf", f"{key}={value}"]
        if py_files:
            cmd += ["--py-files", ",".join(str(p) for p in py_files)]
        cmd += [str(app), *app_args]
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=self.env(), start_new_session=True, preexec_fn=_die_with_parent,
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop_group(proc, grace=5.0)
            stdout, stderr = proc.communicate()
            raise TimeoutError(
                f"spark-submit of {app} did not finish within {timeout:.0f}s\n{stderr[-4000:]}"
            ) from None
        finally:
            _stop_group(proc, grace=5.0)  # also sweeps leftovers of a finished submit
        return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
