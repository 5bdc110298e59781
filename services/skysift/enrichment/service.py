"""skysift.v1.Enrichment: translates EnrichRequest/EnrichResponse to :class:`~skysift.enrichment.core.EnrichmentStage`."""

from __future__ import annotations

from skysift import config
from skysift.config import Settings
from skysift.enrichment.core import EnrichmentStage
from skysift.enrichment.settings import EnrichmentSettings
from skysift.rpc.convert import batch_ref
from skysift.rpc.errors import grpc_method
from skysift.store import open_store
from skysift.v1 import enrichment_pb2, enrichment_pb2_grpc

SERVICE_NAME = "skysift.v1.Enrichment"


class EnrichmentServicer(enrichment_pb2_grpc.EnrichmentServicer):
    def __init__(self, settings: Settings, store=None, enrichment: EnrichmentSettings | None = None):
        # one stage per process: the extinction map is loaded once, not per request
        self.stage = EnrichmentStage(settings, store or open_store(settings=settings),
                                     enrichment or config.load(EnrichmentSettings))

    @grpc_method
    def Enrich(self, request: enrichment_pb2.EnrichRequest, context) -> enrichment_pb2.EnrichResponse:
        result = self.stage.process(request.alerts_key)
        return enrichment_pb2.EnrichResponse(enriched=batch_ref(result.enriched), status_counts=result.status_counts)


def register(server, settings: Settings) -> list[str]:
    enrichment_pb2_grpc.add_EnrichmentServicer_to_server(EnrichmentServicer(settings), server)
    return [SERVICE_NAME]
