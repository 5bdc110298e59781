"""The shared server bootstrap: health, reflection, metrics, error mapping, on a real loopback server."""

import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from skysift import config, errors
from skysift.rpc import server
from skysift.rpc.errors import call, grpc_method
from skysift.v1 import enrichment_pb2, enrichment_pb2_grpc
from tests import servers
from tests.servers import free_port


class FailingEnrichment(enrichment_pb2_grpc.EnrichmentServicer):
    """Raises the core error named in the request's key, to check the status mapping."""

    @grpc_method
    def Enrich(self, request, context):
        raise {"bad": errors.InvalidArgument("bad key"), "missing": errors.NotFound("no such key")}.get(
            request.alerts_key, RuntimeError("boom with secret detail")
        )


@pytest.fixture(scope="module")
def running():
    settings = config.Settings()

    def register(s):
        enrichment_pb2_grpc.add_EnrichmentServicer_to_server(FailingEnrichment(), s)
        return ["skysift.v1.Enrichment"]

    r = server.start("enrichment", register, settings, port=0, metrics_port=free_port())
    yield r
    r.stop(0)


def test_health_reports_serving_for_the_service(running):
    with servers.channel(running.port) as ch:
        resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="skysift.v1.Enrichment"))
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_service(running):
    with servers.channel(running.port) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        responses = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in responses[0].list_services_response.service}
    assert "skysift.v1.Enrichment" in names and "grpc.health.v1.Health" in names


@pytest.mark.parametrize("key,expected", [("bad", errors.InvalidArgument), ("missing", errors.NotFound)])
def test_core_errors_map_to_status_codes_and_back(running, key, expected):
    with servers.channel(running.port) as ch:
        with pytest.raises(expected):
            call(enrichment_pb2_grpc.EnrichmentStub(ch).Enrich, enrichment_pb2.EnrichRequest(alerts_key=key))


def test_unexpected_errors_are_internal_without_details(running):
    with servers.channel(running.port) as ch:
        with pytest.raises(grpc.RpcError) as info:
            enrichment_pb2_grpc.EnrichmentStub(ch).Enrich(enrichment_pb2.EnrichRequest(alerts_key="x"))
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert "secret detail" not in info.value.details()


def test_metrics_count_requests(running):
    with servers.channel(running.port) as ch:
        with pytest.raises(grpc.RpcError):
            enrichment_pb2_grpc.EnrichmentStub(ch).Enrich(enrichment_pb2.EnrichRequest(alerts_key="bad"))
    body = urllib.request.urlopen(f"http://127.0.0.1:{running.metrics_port}/metrics", timeout=5).read().decode()
    assert 'skysift_grpc_requests_total{code="INVALID_ARGUMENT",method="Enrich",service="enrichment"}' in body
