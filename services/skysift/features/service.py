"""skysift.v1.Features: translates ComputeFeaturesRequest/Response to :class:`~skysift.features.stage.FeaturesStage`."""

from __future__ import annotations

from skysift import config
from skysift.config import Settings
from skysift.features.settings import FeaturesSettings
from skysift.features.stage import FeaturesStage
from skysift.rpc.convert import batch_ref
from skysift.rpc.errors import grpc_method
from skysift.store import open_store
from skysift.v1 import features_pb2, features_pb2_grpc

SERVICE_NAME = "skysift.v1.Features"


class FeaturesServicer(features_pb2_grpc.FeaturesServicer):
    def __init__(self, settings: Settings, store=None, features: FeaturesSettings | None = None):
        self.stage = FeaturesStage(settings, store or open_store(settings=settings),
                                   features or config.load(FeaturesSettings))

    @grpc_method
    def ComputeFeatures(self, request: features_pb2.ComputeFeaturesRequest, context) -> features_pb2.ComputeFeaturesResponse:
        result = self.stage.process(request.alerts_key, request.enriched_key or None)
        return features_pb2.ComputeFeaturesResponse(
            features=batch_ref(result.features),
            feature_set_version=result.feature_set_version, n_flagged=result.n_flagged,
        )


def register(server, settings: Settings) -> list[str]:
    features_pb2_grpc.add_FeaturesServicer_to_server(FeaturesServicer(settings), server)
    return [SERVICE_NAME]
