"""Client-side gRPC helpers: channels with the configured message size, and waiting for SERVING."""

from __future__ import annotations

import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from skysift.config import Settings


def channel(address: str, settings: Settings | None = None) -> grpc.Channel:
    """round_robin: when ``address`` resolves to several servers (``dns:///`` on a headless Service, an ``ipv4:``
    list), calls take turns over all of them; gRPC's default (pick_first) sends every call to the first."""
    max_bytes = (settings.grpc_max_message_mb if settings else 64) * 1024 * 1024
    return grpc.insecure_channel(address, options=[
        ("grpc.max_receive_message_length", max_bytes), ("grpc.max_send_message_length", max_bytes),
        ("grpc.lb_policy_name", "round_robin"),
    ])


def health_status(address: str, service: str = "", timeout: float = 2.0) -> str:
    """The grpc.health.v1 status name of ``service`` at ``address`` (UNREACHABLE when it does not answer)."""
    with grpc.insecure_channel(address) as ch:
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
