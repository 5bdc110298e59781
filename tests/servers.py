"""Real servers for tests, started on loopback with free ports and stopped after: Kafka (Tansu), S3
(SeaweedFS), MLflow (launched by skysift.localservers, which the bench shares), and skysift's own gRPC services.
Each start is bounded in time, scaled by the tests' time factor."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from skysift import localservers
from skysift.access import new_token
from skysift.localservers import S3_SECRET_KEY as S3_SECRET_KEY  # re-exported (as X as X) for the test modules
from skysift.localservers import VENV_BIN, Proc, free_port, spawn, wait_port
from skysift.localservers import inherited_env as inherited_env
from skysift.localservers import wait_http as wait_http
from tests.determinism import scaled

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


# the launchers, patient by the tests' time factor
def start_kafka(workdir: Path, advertised_port: int | None = None) -> Proc:
    return localservers.start_kafka(workdir, scaled(20), advertised_port)


def start_s3(workdir: Path) -> Proc:
    return localservers.start_s3(workdir, scaled(60))


def start_mlflow(workdir: Path) -> Proc:
    return localservers.start_mlflow(workdir, scaled(60))


def spawn_service(service: str, env: dict, workdir: Path, cwd: Path | None = None, port: int | None = None) -> Proc:
    """One skysift gRPC service as its own process (`skysift serve <service>`), not waited for: spawn several,
    then :func:`wait_listening`, and their start-ups (imports, model loading) overlap."""
    port = port or free_port()
    log = workdir / f"{service}.log"
    proc = spawn([str(VENV_BIN / "skysift"), "serve", service, "--port", str(port), "--metrics-port", "0"], log,
                 env=env, cwd=cwd)
    return Proc(proc, port, {f"SKYSIFT_{service.upper()}_ADDRESS": f"127.0.0.1:{port}"}, log)


def wait_listening(*procs: Proc) -> None:
    """Wait for spawned services to listen; on a failure every one of them is stopped."""
    try:
        for proc in procs:
            wait_port(proc.port, scaled(60), proc.proc, proc.log_path.stem)
    except BaseException:
        for proc in procs:
            proc.stop()
        raise


def start_service(service: str, env: dict, workdir: Path, cwd: Path | None = None) -> Proc:
    proc = spawn_service(service, env, workdir, cwd)
    wait_listening(proc)
    return proc


def start_services(services: list[str], env: dict, workdir: Path, cwd: Path | None = None) -> dict[str, Proc]:
    """Several services started at once, each given every one's address (``SKYSIFT_<SERVICE>_ADDRESS``)."""
    ports = {service: free_port() for service in services}
    addresses = {f"SKYSIFT_{service.upper()}_ADDRESS": f"127.0.0.1:{port}" for service, port in ports.items()}
    procs = {service: spawn_service(service, {**env, **addresses}, workdir, cwd, port) for service, port in ports.items()}
    wait_listening(*procs.values())
    return procs


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
