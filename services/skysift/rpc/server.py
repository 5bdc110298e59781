"""Server bootstrap shared by the five services: health, reflection, metrics, JSON logs, graceful stop."""

from __future__ import annotations

import logging
import signal
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from typing import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import Counter, Histogram, start_http_server

from skysift.config import Settings

log = logging.getLogger(__name__)

REQUESTS = Counter("skysift_grpc_requests_total", "gRPC requests", ["service", "method", "code"])
LATENCY = Histogram("skysift_grpc_request_seconds", "gRPC request latency", ["service", "method"])
MAX_CONNECTION_AGE_MS = 5 * 60 * 1000


class MetricsInterceptor(grpc.ServerInterceptor):
    """Count requests and time them per method (unary handlers; streams are counted when they start)."""

    def __init__(self, service: str):
        self.service = service

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method.rsplit("/", 1)[-1]
        inner = handler.unary_unary

        def timed(request, context):
            start = time.perf_counter()
            code = "OK"
            try:
                return inner(request, context)
            except Exception:
                code = str(context.code() or grpc.StatusCode.UNKNOWN).rsplit(".", 1)[-1]
                raise
            finally:
                LATENCY.labels(self.service, method).observe(time.perf_counter() - start)
                REQUESTS.labels(self.service, method, code).inc()

        return grpc.unary_unary_rpc_method_handler(
            timed, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )


@dataclass
class Running:
    """A started server: its gRPC port, metrics port and a stop function."""

    server: grpc.Server
    port: int
    metrics_port: int | None
    health: health.HealthServicer

    def stop(self, grace: float = 5.0) -> None:
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()


def start(
    service: str,
    register: Callable[[grpc.Server], list[str]],
    settings: Settings,
    port: int,
    metrics_port: int | None = None,
) -> Running:
    """Build and start a server; ``register`` adds the servicers and returns their full service names."""
    max_bytes = settings.grpc_max_message_mb * 1024 * 1024
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.grpc_workers, thread_name_prefix=service),
        interceptors=[MetricsInterceptor(service)],
        options=[("grpc.max_receive_message_length", max_bytes), ("grpc.max_send_message_length", max_bytes),
                 # Clients reconnect (and so re-resolve a headless Service's pods) every few minutes, so long-lived
                 # channels also reach replicas added since; calls in flight finish first (no grace limit).
                 ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_MS)],
    )
    names = register(server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    bound = server.add_insecure_port(f"{settings.host}:{port}")
    if bound == 0:
        raise OSError(f"{service}: cannot bind {settings.host}:{port}")
    if metrics_port is not None:
        start_http_server(metrics_port, addr=settings.host)
    server.start()
    for name in [*names, ""]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving", extra={"service": service, "address": f"{settings.host}:{bound}", "metrics_port": metrics_port})
    return Running(server, bound, metrics_port, health_servicer)


def serve_forever(running: Running, grace: float) -> None:
    """Block until SIGTERM/SIGINT, then report NOT_SERVING and drain in-flight calls for ``grace`` seconds."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    log.info("shutting down", extra={"grace_seconds": grace})
    running.stop(grace)
