"""A real HDFS for integration tests: Hadoop's MiniDFSCluster in its own JVM on 127.0.0.1.

The cluster (one NameNode, one DataNode) comes from `hadoop-client-minicluster`, the version
matching pyspark's bundled Hadoop client, fetched by Maven into ~/.m2 and started through the
tiny launcher `minidfs/MiniDfs.java`, compiled into the caller's work dir.

    reason = minidfs_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with MiniDfs(tmp_path) as dfs:
        configure_spark_for_hdfs(spark)
        df.write.parquet(f"{dfs.uri}/some/dir")
"""
from __future__ import annotations

import functools
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

from pyspark.sql import SparkSession

HADOOP_VERSION = "3.3.4"  # pinned in minidfs/pom.xml; matches pyspark 3.5.8's hadoop-client
_LAUNCHER_DIR = Path(__file__).resolve().with_name("minidfs")
_READY_PREFIX = "MINIDFS_READY "
_MAVEN_TIMEOUT_S = 600.0

# Hadoop client settings for a SparkSession talking to the single-DataNode cluster.
# Replication 1: the default of 3 can never be met, which leaves every block under-replicated.
# DataNodes are reached by the IP they registered from (127.0.0.1), so the hostname switch
# stays off; it is spelled out so that a site config cannot turn it on.
HDFS_CLIENT_CONF: dict[str, str] = {
    "dfs.replication": "1",
    "dfs.client.use.datanode.hostname": "false",
}
SPARK_HDFS_CONF: dict[str, str] = {f"spark.hadoop.{k}": v for k, v in HDFS_CLIENT_CONF.items()}


class MiniDfsUnavailable(RuntimeError):
    """Maven could not provide the MiniDFSCluster artifacts."""


@functools.lru_cache(maxsize=1)
def _resolve_classpath() -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MiniDfsUnavailable(
            "Maven (mvn) is not on PATH: cannot fetch hadoop-client-minicluster"
        )
    with tempfile.TemporaryDirectory(prefix="minidfs-cp-") as tmp:
        out = Path(tmp) / "classpath.txt"
        try:
            proc = subprocess.run(
                [mvn, "-B", "-q", "-f", str(_LAUNCHER_DIR / "pom.xml"),
                 "dependency:build-classpath", f"-Dmdep.outputFile={out}"],
                stdin=subprocess.DEVNULL, capture_output=True, text=True,
                timeout=_MAVEN_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise MiniDfsUnavailable(
                f"Maven did not resolve hadoop-client-minicluster:{HADOOP_VERSION} "
                f"within {_MAVEN_TIMEOUT_S:.0f}s"
            ) from None
        if proc.returncode != 0 or not out.is_file():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise MiniDfsUnavailable(
                f"Maven could not fetch hadoop-client-minicluster:{HADOOP_VERSION} "
                f"(exit {proc.returncode}):\n{tail}"
            )
        return out.read_text().strip()


def minidfs_unavailable_reason() -> str | None:
    """None if the MiniDFSCluster artifacts are available (fetching them if needed), else why not.

    Meant for `pytest.skip(reason)`; the (slow) Maven resolution runs once per process.
    """
    try:
        _resolve_classpath()
    except MiniDfsUnavailable as exc:
        return str(exc)
    return None


class MiniDfs:
    """A MiniDFSCluster in a child JVM; use as a context manager, `uri` is `hdfs://127.0.0.1:PORT`.

    `port=0` lets the NameNode pick a free port itself (no race). Files under `workdir`:
    `minidfs.log` (the JVM's log), `classes/` (compiled launcher), `dfs/` (cluster storage).
    """

    def __init__(self, workdir: Path, port: int = 0, startup_timeout: float = 120.0) -> None:
        self.workdir = Path(workdir)
        self.port = port
        self.startup_timeout = startup_timeout
        self.log_path = self.workdir / "minidfs.log"
        self._uri: str | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._pump: threading.Thread | None = None

    @property
    def uri(self) -> str:
        if self._uri is None:
            raise RuntimeError("MiniDfs is not running")
        return self._uri

    def __enter__(self) -> MiniDfs:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError("MiniDfs already started")
        classpath = _resolve_classpath()
        classes = self.workdir / "classes"
        classes.mkdir(parents=True, exist_ok=True)
        javac = subprocess.run(
            ["javac", "-d", str(classes), "-cp", classpath, str(_LAUNCHER_DIR / "MiniDfs.java")],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
        )
        if javac.returncode != 0:
            raise RuntimeError(f"javac MiniDfs.java failed:\n{javac.stdout}{javac.stderr}")
        with open(self.log_path, "w") as log:
            # stdin stays an open pipe: the launcher shuts down when it closes, including when
            # this process dies without cleaning up.
            self._proc = subprocess.Popen(
                ["java", "-Xmx512m", "-cp", f"{classes}{os.pathsep}{classpath}", "MiniDfs",
                 str(self.workdir / "dfs"), str(self.port)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
            )
        try:
            self._uri = self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        lines: queue.Queue[str | None] = queue.Queue()
        stdout = self._proc.stdout

        def pump() -> None:  # readline() blocks, so read on a thread and wait with a timeout
            for line in stdout:
                lines.put(line)
            lines.put(None)

        self._pump = threading.Thread(target=pump, name="minidfs-stdout", daemon=True)
        self._pump.start()
        deadline = time.monotonic() + self.startup_timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                continue
            if line is None:
                code = self._proc.wait(timeout=30)
                raise RuntimeError(
                    f"MiniDFS exited with {code} before it was ready\n{self._log_tail()}"
                )
            if line.startswith(_READY_PREFIX):
                return line[len(_READY_PREFIX):].strip()
        raise TimeoutError(
            f"MiniDFS not ready within {self.startup_timeout:.0f}s\n{self._log_tail()}"
        )

    def stop(self) -> None:
        ready = self._uri is not None
        proc, self._proc, self._uri = self._proc, None, None
        if proc is None:
            return
        if proc.stdin is not None:
            try:
                proc.stdin.close()  # a ready launcher then shuts the cluster down cleanly
            except OSError:
                pass
        try:
            # One still starting up only reads stdin once ready: terminate it right away.
            proc.wait(timeout=30 if ready else 0)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._pump is not None:
            self._pump.join(timeout=5)  # the process is gone, so its stdout hits EOF
            self._pump = None
        if proc.stdout is not None:
            proc.stdout.close()

    def _log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return f"(no log at {self.log_path})"
        return f"--- last lines of {self.log_path} ---\n" + "\n".join(text.splitlines()[-lines:])


def configure_spark_for_hdfs(spark: SparkSession) -> None:
    """Apply HDFS_CLIENT_CONF to a running session (same effect as SPARK_HDFS_CONF at build time).

    Must happen before the session first touches the cluster's URI: Hadoop caches one
    FileSystem per scheme+authority with the settings it was created with.
    """
    hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()
    for key, value in HDFS_CLIENT_CONF.items():
        hadoop_conf.set(key, value)


def copy_local_dir_to_hdfs(spark: SparkSession, local_dir: Path, dest_uri: str) -> None:
    """Copy `local_dir` recursively to `dest_uri` (must not exist yet) with Hadoop's FileSystem."""
    if not Path(local_dir).is_dir():
        raise NotADirectoryError(local_dir)
    jvm = spark.sparkContext._jvm
    assert jvm is not None, "SparkContext has no JVM gateway"
    hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()
    dest = jvm.org.apache.hadoop.fs.Path(dest_uri)
    fs = dest.getFileSystem(hadoop_conf)
    if fs.exists(dest):
        raise FileExistsError(dest_uri)
    fs.mkdirs(dest.getParent())
    src = jvm.org.apache.hadoop.fs.Path(Path(local_dir).resolve().as_uri())
    fs.copyFromLocalFile(False, False, src, dest)
