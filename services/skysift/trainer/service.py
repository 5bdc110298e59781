"""Trainer gRPC servicer: translates skysift.v1.Trainer messages to :mod:`.rounds`, :mod:`.labels`, :mod:`.datasets`."""

from __future__ import annotations

import math
from datetime import UTC

from google.protobuf.timestamp_pb2 import Timestamp

from skysift import errors, validation
from skysift.modeltags import default_tag
from skysift.rpc import auth
from skysift.rpc.errors import grpc_method
from skysift.trainer.datasets import Dataset, DatasetRequest, Datasets
from skysift.trainer.labels import LabelEvent
from skysift.trainer.rounds import POOL_FIELDS, RoundResult, Trainer
from skysift.v1 import trainer_pb2, trainer_pb2_grpc

SERVICE = "skysift.v1.Trainer"


def _when(ts: Timestamp, name: str):
    if not (ts.seconds or ts.nanos):
        return None
    try:
        return ts.ToDatetime(tzinfo=UTC)
    except ValueError as exc:  # seconds or nanos out of a Timestamp's range
        raise errors.InvalidArgument(f"{name}: {exc}") from None


def _timestamp(when) -> Timestamp:
    ts = Timestamp()
    if when is not None:
        ts.FromDatetime(when)
    return ts


def event_from_proto(m: trainer_pb2.LabelEvent, user: str) -> LabelEvent:
    """The event as ``user`` (the authenticated caller) gave it; a different ``user`` in the message is refused,
    never recorded: who labelled is the credential's, not the request's, to say."""
    if m.user and m.user != user:
        raise errors.PermissionDenied(f"a label for candid {m.candid} names user {m.user!r}, but the caller is {user!r}")
    return LabelEvent(candid=m.candid, label=m.label, user=user, object_id=m.object_id, model_tag=m.model_tag,
                      timestamp=_when(m.timestamp, f"timestamp of the label for candid {m.candid}"),
                      source=m.source or "human", experiment=m.experiment,
                      round=m.round if m.HasField("round") else None, comment=m.comment)


def event_to_proto(e: LabelEvent) -> trainer_pb2.LabelEvent:
    m = trainer_pb2.LabelEvent(candid=e.candid, object_id=e.object_id, label=e.label, model_tag=e.model_tag,
                               user=e.user, timestamp=_timestamp(e.timestamp), source=e.source, event_id=e.event_id,
                               experiment=e.experiment, comment=e.comment)
    if e.round is not None:
        m.round = e.round
    return m


def round_to_proto(r: RoundResult) -> trainer_pb2.RunRoundResponse:
    return trainer_pb2.RunRoundResponse(
        experiment=r.experiment, round=r.round, created=r.created, mlflow_run_id=r.mlflow_run_id,
        model_version=r.model_version, champion_moved=r.champion_moved,
        metrics={k: float(v) for k, v in r.metrics.items() if v is not None and math.isfinite(v)},
        queue_size=r.queue_size, queue_key=r.queue_key, message=r.message, n_train=r.n_train, n_holdout=r.n_holdout,
        n_pool=r.n_pool, quality_issues=r.quality_issues, strategy=r.strategy, timings=r.timings,
    )


def dataset_to_proto(d: Dataset) -> trainer_pb2.Dataset:
    import json

    return trainer_pb2.Dataset(dataset_id=d.dataset_id, name=d.name, n_samples=d.n_samples,
                               class_counts=d.class_counts, quality_score=d.quality_score,
                               quality_issues=d.quality_issues, samples_key=d.samples_key,
                               manifest_json=json.dumps(d.manifest, default=str))


class TrainerServicer(trainer_pb2_grpc.TrainerServicer):
    def __init__(self, settings, store, trainer_settings=None):
        self.trainer = Trainer(settings, store, trainer_settings)
        self.datasets = Datasets(settings, store, self.trainer.ts)

    @grpc_method
    def SubmitLabels(self, request, context):
        validation.check_labels_per_call(len(request.labels))
        user = auth.principal().user
        ids = self.trainer.labels.submit([event_from_proto(m, user) for m in request.labels])
        return trainer_pb2.SubmitLabelsResponse(event_ids=ids)

    @grpc_method
    def GetLabels(self, request, context):
        wanted = set(request.candids)
        if request.history:
            events = self.trainer.labels.history(user=request.user or None)
            events = [e for e in events if not wanted or e.candid in wanted]
        else:
            latest = self.trainer.labels.latest(candids=wanted or None)
            events = [e for _, e in sorted(latest.items()) if not request.user or e.user == request.user]
        return trainer_pb2.GetLabelsResponse(labels=[event_to_proto(e) for e in events])

    @grpc_method
    def GetQueue(self, request, context):
        q = self.trainer.get_queue(request.experiment, request.round if request.HasField("round") else None)
        items = [trainer_pb2.QueueItem(candid=i.candid, object_id=i.object_id, rank=i.rank, score=i.score,
                                       probability=i.probability, strategy=i.strategy, reason=i.reason,
                                       alerts_key=i.alerts_key, label=i.label) for i in q.items]
        return trainer_pb2.GetQueueResponse(experiment=q.experiment, round=q.round, items=items)

    @grpc_method
    def RunRound(self, request, context):
        ts = self.trainer.ts
        result = self.trainer.run_round(
            request.experiment, request.model_tag or default_tag(), strategy=request.strategy or ts.strategy,
            batch_size=request.batch_size or ts.batch_size, initial_batch_size=request.initial_batch_size or ts.initial_batch_size,
            seed=request.seed, params=dict(request.params), force=request.force, dataset_id=request.dataset_id or None,
            **{field: getattr(request, field) for field in POOL_FIELDS if request.HasField(field)},
        )
        return round_to_proto(result)

    @grpc_method
    def CollectDataset(self, request, context):
        validation.check_count(request.max_samples, "max_samples")
        req = DatasetRequest(
            name=request.name, model_tag=request.model_tag or default_tag(), survey=request.survey,
            start=_when(request.start, "start") if request.HasField("start") else None,
            end=_when(request.end, "end") if request.HasField("end") else None,
            score_threshold=request.score_threshold or 0.9, prefer_validated=request.prefer_validated,
            max_samples=request.max_samples or 1000,
        )
        return dataset_to_proto(self.datasets.collect(req))

    @grpc_method
    def ListDatasets(self, request, context):
        return trainer_pb2.ListDatasetsResponse(datasets=[dataset_to_proto(d) for d in self.datasets.list()])

    @grpc_method
    def GetDataset(self, request, context):
        return dataset_to_proto(self.datasets.get(request.dataset_id))


def register(server, settings) -> list[str]:
    from skysift.store import open_store

    trainer_pb2_grpc.add_TrainerServicer_to_server(TrainerServicer(settings, open_store(settings=settings)), server)
    return [SERVICE]
