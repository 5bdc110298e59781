"""`skysift dev`: the whole system on one machine with embedded defaults.

Starts MLflow (sqlite + local artifacts), the five gRPC services on loopback and the Streamlit app as child
processes, runs one poll over the bundled demo alerts through gRPC with their stamps kept, runs round 0 of
the experiment the app opens on (so its first page is a queue to label, not an error), prints where
everything is and the ``export`` lines another shell needs to reach it, and stops every child on Ctrl-C (or
right after the round with ``once``).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from skysift import config
from skysift.access import AuthSettings, new_token, write_private
from skysift.config import SERVICES, Settings
from skysift.localservers import mlflow_command, port_in_use, wait_port
from skysift.modeltags import DEFAULT_EXPERIMENT, default_tag

BIN = Path(sys.executable).parent
# The demo's defaults, under what the shell sets. Its Rubin alerts are all single detections (no light curve, their
# features NaN) and round 0 queued them first: rounds queue only alerts with at least two detections.
DEMO_SETTINGS = {"SKYSIFT_TRAINER_POOL_MIN_DETECTIONS": "2"}


@dataclass
class Stack:
    """Child processes of the dev stack, stopped in reverse order."""

    workdir: Path
    procs: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    def spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "ab")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def stop(self, timeout: float = 15) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for _, proc in reversed(self.procs):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def local_token(workdir: Path, env: dict[str, str]) -> Path | None:
    """Make (once, then reuse) a local token for the dev stack and put it in ``env``: a table at
    ``<workdir>/auth/tokens`` with one identity, ``dev`` (operator and app: the CLI and the Streamlit app both use
    it), and the token alone in ``<workdir>/auth/token``, readable by its owner only. Returns that file, or None
    when a token table is already configured (then the caller's own tokens are used)."""
    configured = config.load(AuthSettings)
    if configured.tokens is not None or configured.tokens_file is not None:
        return None
    token_file, table_file = workdir / "auth" / "token", workdir / "auth" / "tokens"
    if not (token_file.is_file() and table_file.is_file()):
        token = new_token()
        write_private(table_file, f"# skysift dev: TOKEN IDENTITY ROLES (docs/auth.md)\n{token} dev operator,app\n")
        write_private(token_file, token + "\n")
    env.pop("SKYSIFT_AUTH_TOKEN", None)  # the file below is the dev stack's token, not one from the shell
    env.update({"SKYSIFT_AUTH_TOKENS_FILE": str(table_file), "SKYSIFT_AUTH_TOKEN_FILE": str(token_file)})
    return token_file


def start_mlflow(stack: Stack, port: int, env: dict[str, str]) -> str:
    uri = f"http://127.0.0.1:{port}"
    proc = stack.spawn("mlflow", mlflow_command(stack.workdir, port, stack.workdir / "mlartifacts"), env)
    wait_port(port, 400, proc, "mlflow")  # its first start migrates the database: minutes on a busy machine
    return uri


def start_services(stack: Stack, env: dict[str, str], settings: Settings) -> dict[str, str]:
    """Each service on the port of its SKYSIFT_<SERVICE>_ADDRESS (50051-50055 by default)."""
    from skysift.rpc.channels import wait_serving

    addresses = {}
    for service in SERVICES:
        port = int(settings.address(service).rsplit(":", 1)[1])
        if port_in_use(port):
            raise RuntimeError(f"port {port} for {service} is in use: stop the other process or set SKYSIFT_{service.upper()}_ADDRESS")
        stack.spawn(service, [str(BIN / "skysift"), "serve", service, "--port", str(port)], env)
        addresses[service] = f"127.0.0.1:{port}"
    for address in addresses.values():
        wait_serving(address, timeout=120)
    return addresses


def start_app(stack: Stack, port: int, env: dict[str, str], repo: Path) -> str | None:
    app = repo / "streamlit_app" / "app.py"
    if not app.exists():
        return None
    proc = stack.spawn("streamlit", [  # `skysift app`: Streamlit's own log lines redacted too
        str(BIN / "skysift"), "app", "--script", str(app), "--server.port", str(port), "--server.address",
        "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
    ], env)
    wait_port(port, 120, proc, "streamlit")
    return f"http://127.0.0.1:{port}"


def first_round(settings: Settings, timeout: float = 600) -> str:
    """Round 0 of the default experiment through the trainer service: the alerts to label first (a random batch,
    as no model exists yet). Without it the app opens on an experiment with no queue."""
    from skysift import config
    from skysift.app.trainer import TrainerClient
    from skysift.trainer.settings import TrainerSettings

    strategy = config.load(TrainerSettings).strategy
    result = TrainerClient(settings, timeout=timeout).run_round(DEFAULT_EXPERIMENT, default_tag(), strategy,
                                                                timeout)
    if not result.created:
        return f"round {result.round} of experiment {DEFAULT_EXPERIMENT!r} already there: {result.message}"
    return (f"round {result.round} of experiment {DEFAULT_EXPERIMENT!r} ({default_tag()}): {result.queue_size} "
            "alerts queued to label in the app; `skysift round` learns from your labels")


def export_lines(env: dict[str, str], addresses: dict[str, str]) -> list[str]:
    """``export`` lines that point another shell's `skysift` at this stack (its store, MLflow and services)."""
    names = {"SKYSIFT_STORE_URL": env["SKYSIFT_STORE_URL"],
             "SKYSIFT_MLFLOW_TRACKING_URI": env["SKYSIFT_MLFLOW_TRACKING_URI"]}
    names.update({f"SKYSIFT_{service.upper()}_ADDRESS": address for service, address in addresses.items()})
    if env.get("SKYSIFT_AUTH_TOKEN_FILE"):  # the stack's own token (skysift dev made it): a path, never the token
        names["SKYSIFT_AUTH_TOKEN_FILE"] = env["SKYSIFT_AUTH_TOKEN_FILE"]
    return [f"export {name}={shlex.quote(value)}" for name, value in names.items()]
