"""Client-side gRPC helpers: channels with the configured message size and credentials, and waiting for SERVING."""

from __future__ import annotations

import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from skysift import config
from skysift.access import AuthSettings
from skysift.client import BearerToken
from skysift.config import Settings
from skysift.rpc.auth import channel_credentials


def channel(address: str, settings: Settings | None = None, auth: AuthSettings | None = None) -> grpc.Channel:
    """A channel that sends this process's token (SKYSIFT_AUTH_TOKEN[_FILE]) on every call, over TLS when
    SKYSIFT_AUTH_TLS_CA_FILE is set. round_robin: when ``address`` resolves to several servers (``dns:///`` on a
    headless Service, an ``ipv4:`` list), calls take turns over all of them; gRPC's default (pick_first) sends
    every call to the first."""
    auth = auth or config.load(AuthSettings)
    max_bytes = (settings.grpc_max_message_mb if settings else 64) * 1024 * 1024
    ch = _open(address, auth, [("grpc.max_receive_message_length", max_bytes),
                               ("grpc.max_send_message_length", max_bytes), ("grpc.lb_policy_name", "round_robin")])
    token = auth.bearer()
    return grpc.intercept_channel(ch, BearerToken(token)) if token else ch


def _open(address: str, auth: AuthSettings, options=None) -> grpc.Channel:
    credentials = channel_credentials(auth)
    if credentials is None:
        return grpc.insecure_channel(address, options=options)
    return grpc.secure_channel(address, credentials, options=options)


def health_status(address: str, service: str = "", timeout: float = 2.0) -> str:
    """The grpc.health.v1 status name of ``service`` at ``address`` (UNREACHABLE when it does not answer).
    Health needs no token, but takes TLS when configured."""
    with _open(address, config.load(AuthSettings)) as ch:
        try:
            resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError:
            return "UNREACHABLE"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)


def wait_serving(address: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if health_status(address, timeout=1.0) == "SERVING":
            return
        time.sleep(0.2)
    raise TimeoutError(f"no SERVING health status from {address} after {timeout:.0f}s")
