"""gRPC servicer of skysift.v1.Inference: proto ↔ :class:`~skysift.inference.core.InferenceStage` calls."""

from __future__ import annotations

import pyarrow as pa
from skysift import config
from skysift.config import Settings
from skysift.errors import FailedPrecondition
from skysift.inference.core import InferenceStage, ScoreResult
from skysift.inference.registry import LoadedModel
from skysift.inference.settings import InferenceSettings
from skysift.rpc.errors import grpc_method
from skysift.v1 import common_pb2, inference_pb2, inference_pb2_grpc

SERVICE_NAME = "skysift.v1.Inference"
STREAM_CHUNK = 1000  # rows converted to protos at a time when streaming


def add_predictions(container, table: pa.Table, models: dict[str, LoadedModel]) -> None:
    """Append a row → Prediction for each row of ``table`` to ``container`` (a repeated Prediction field).

    Probabilities follow each model's pre-order walk (parents before children). Built from one template per
    model tag, copied and filled in place: ~4x faster than constructing each message (2 ms per 1000 alerts).
    """
    if table.num_rows == 0:
        return
    candid = table.column("candid").to_pylist()
    object_id = table.column("objectId").to_pylist()
    tags = table.column("model_tag").to_pylist()
    probs = {c: table.column(c).to_pylist() for c in table.column_names if c.startswith("prob_")}
    templates = {}
    for tag, m in models.items():
        nodes = m.taxonomy.nodes
        template = inference_pb2.Prediction(
            model_tag=tag, model_name=m.name, model_version=m.version, feature_set_version=m.feature_set_version,
            probabilities=[inference_pb2.ClassProbability(label=n.label, parent=n.parent) for n in nodes])
        templates[tag] = (template, [probs[n.column] for n in nodes])
    add = container.add
    for i, tag in enumerate(tags):
        template, columns = templates[tag]
        p = add()
        p.CopyFrom(template)
        p.candid = candid[i]
        p.object_id = object_id[i] or ""
        out = p.probabilities
        for j, column in enumerate(columns):
            out[j].probability = column[i]


def predictions_to_protos(table: pa.Table, models: dict[str, LoadedModel]) -> list[inference_pb2.Prediction]:
    resp = inference_pb2.ScoreResponse()
    add_predictions(resp.predictions, table, models)
    return list(resp.predictions)


def response(result: ScoreResult) -> inference_pb2.ScoreResponse:
    written = result.written
    resp = inference_pb2.ScoreResponse(
        written=common_pb2.BatchRef(key=written.key, survey=written.survey, rows=written.rows) if written else None,
        message=result.message,
    )
    add_predictions(resp.predictions, result.predictions, result.models)
    return resp


class InferenceServicer(inference_pb2_grpc.InferenceServicer):
    def __init__(self, stage: InferenceStage):
        self.stage = stage

    @grpc_method
    def Score(self, request, context):
        return response(self.stage.score_batch(request.features_key, list(request.model_tags),
                                               write=not request.skip_write))

    @grpc_method
    def ScoreCandids(self, request, context):
        return response(self.stage.score_candids(list(request.candids), list(request.model_tags)))

    @grpc_method
    def ScoreAlerts(self, request, context):
        return response(self.stage.score_alerts(list(request.packets), request.format or "auto",
                                                request.schema_json or None, list(request.model_tags),
                                                request.enrich))

    @grpc_method
    def StreamScores(self, request, context):
        result = self.stage.score_batch(request.features_key, list(request.model_tags), write=not request.skip_write)
        table = result.predictions
        for start in range(0, table.num_rows, STREAM_CHUNK):
            yield from predictions_to_protos(table.slice(start, STREAM_CHUNK), result.models)

    @grpc_method
    def ListModels(self, request, context):
        models = []
        for tag in self.stage.config.model_tags:
            try:
                m = self.stage.registry.get(tag)
            except FailedPrecondition:
                continue  # no champion yet for this tag: not listed
            models.append(inference_pb2.ModelInfo(model_tag=tag, model_name=m.name, model_version=m.version,
                                                  feature_set_version=m.feature_set_version,
                                                  classes=[n.label for n in m.taxonomy.nodes]))
        return inference_pb2.ListModelsResponse(models=models)


def register(server, settings: Settings) -> list[str]:
    """Add the Inference servicer; its models load and reload in a background thread from here on."""
    from skysift.store import open_store

    stage = InferenceStage(settings, open_store(settings=settings), config.load(InferenceSettings))
    stage.start_polling()
    inference_pb2_grpc.add_InferenceServicer_to_server(InferenceServicer(stage), server)
    return [SERVICE_NAME]
