"""The app's client of the trainer's gRPC API: queues, label events and datasets as plain dataclasses.

Every call goes through :func:`skysift.rpc.errors.call`, so a status comes back as the skysift error it stands
for; an unreachable trainer becomes :class:`~skysift.errors.Unavailable` with the address in the message,
which the pages show as a sentence instead of a stack trace.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from skysift import errors
from skysift.access import USER_HEADER
from skysift.config import Settings
from skysift.rpc.channels import channel
from skysift.rpc.errors import call
from skysift.trainer.labels import (
    LabelEvent as Label,  # the app submits the trainer's own label events
)
from skysift.trainer.rounds import QueueItem


@dataclass(frozen=True)
class Queue:
    experiment: str
    round: int
    items: list[QueueItem]


@dataclass(frozen=True)
class RoundResult:
    """What Trainer.RunRound answered; ``created`` is False when no label changed since the last round."""

    experiment: str
    round: int
    created: bool
    message: str
    strategy: str
    n_train: int
    n_holdout: int
    n_pool: int
    queue_size: int
    model_version: str
    champion_moved: bool
    metrics: dict[str, float]
    quality_issues: list[str]


@dataclass(frozen=True)
class Dataset:
    dataset_id: str
    name: str
    n_samples: int
    class_counts: dict[str, int]
    quality_score: float
    quality_issues: list[str]
    samples_key: str
    manifest: dict = field(default_factory=dict)


class TrainerClient:
    """One channel to the trainer; cheap to keep for the whole app (``st.cache_resource``)."""

    def __init__(self, settings: Settings, timeout: float = 15.0):
        from skysift.v1 import trainer_pb2_grpc

        self.address = settings.trainer_address
        self.timeout = timeout
        self._channel = channel(self.address, settings)
        self._stub = trainer_pb2_grpc.TrainerStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: str, request, timeout: float | None = None, metadata=None):
        try:
            return call(getattr(self._stub, method), request, timeout=timeout or self.timeout, metadata=metadata)
        except errors.Unavailable as exc:
            raise errors.Unavailable(f"the trainer at {self.address} is unreachable ({exc}); start it with "
                                     "`skysift serve trainer` or set SKYSIFT_TRAINER_ADDRESS") from None

    def queue(self, experiment: str, round_number: int | None = None) -> Queue:
        from skysift.v1 import trainer_pb2

        request = trainer_pb2.GetQueueRequest(experiment=experiment)
        if round_number is not None:
            request.round = round_number
        resp = self._call("GetQueue", request)
        items = [QueueItem(i.candid, i.object_id, i.rank, i.score, i.probability, i.strategy, i.reason, i.alerts_key)
                 for i in resp.items]
        return Queue(resp.experiment or experiment, resp.round, sorted(items, key=lambda i: i.rank))

    def submit(self, labels: list[Label]) -> list[str]:
        """Submit the signed-in user's labels: the user goes in the x-skysift-user header, which the trainer
        accepts only from a token with the app role (anyone else labels as its own identity)."""
        from skysift.v1 import trainer_pb2

        users = {lab.user for lab in labels}
        if len(users) != 1:
            raise errors.InvalidArgument(f"one call submits one user's labels, got {len(users)} users")
        events = []
        for lab in labels:
            event = trainer_pb2.LabelEvent(candid=lab.candid, object_id=lab.object_id, label=lab.label,
                                           model_tag=lab.model_tag, user=lab.user, source=lab.source,
                                           experiment=lab.experiment, comment=lab.comment)
            if lab.round is not None:
                event.round = lab.round
            if lab.timestamp is not None:
                event.timestamp.FromDatetime(lab.timestamp)
            events.append(event)
        return list(self._call("SubmitLabels", trainer_pb2.SubmitLabelsRequest(labels=events),
                               metadata=((USER_HEADER, users.pop()),)).event_ids)

    def labels(self, candids=(), history: bool = False, user: str = "") -> list[Label]:
        from skysift.v1 import trainer_pb2

        resp = self._call("GetLabels", trainer_pb2.GetLabelsRequest(candids=list(candids), history=history, user=user))
        return [Label(candid=e.candid, label=e.label, user=e.user, object_id=e.object_id, model_tag=e.model_tag,
                      source=e.source, experiment=e.experiment,
                      round=e.round if e.HasField("round") else None, comment=e.comment,
                      timestamp=e.timestamp.ToDatetime(tzinfo=UTC) if e.HasField("timestamp") else None,
                      event_id=e.event_id)
                for e in resp.labels]

    def run_round(self, experiment: str, model_tag: str, strategy: str, timeout: float) -> RoundResult:
        """One round with the trainer's default batch sizes; ``timeout`` is the round's own (rounds take minutes
        on large pools, far beyond the other calls' timeout)."""
        from skysift.v1 import trainer_pb2

        request = trainer_pb2.RunRoundRequest(experiment=experiment, model_tag=model_tag, strategy=strategy)
        r = self._call("RunRound", request, timeout)
        return RoundResult(r.experiment or experiment, r.round, r.created, r.message, r.strategy, r.n_train,
                           r.n_holdout, r.n_pool, r.queue_size, r.model_version, r.champion_moved, dict(r.metrics),
                           list(r.quality_issues))

    def collect_dataset(self, name: str, survey: str, start: datetime | None, end: datetime | None,
                        score_threshold: float, prefer_validated: bool, max_samples: int, model_tag: str) -> Dataset:
        from skysift.v1 import trainer_pb2

        request = trainer_pb2.CollectDatasetRequest(name=name, survey=survey, score_threshold=score_threshold,
                                                    prefer_validated=prefer_validated, max_samples=max_samples,
                                                    model_tag=model_tag)
        if start is not None:
            request.start.FromDatetime(start)
        if end is not None:
            request.end.FromDatetime(end)
        return _dataset(self._call("CollectDataset", request))

    def list_datasets(self) -> list[Dataset]:
        from skysift.v1 import trainer_pb2

        return [_dataset(d) for d in self._call("ListDatasets", trainer_pb2.ListDatasetsRequest()).datasets]

    def get_dataset(self, dataset_id: str) -> Dataset:
        from skysift.v1 import trainer_pb2

        return _dataset(self._call("GetDataset", trainer_pb2.GetDatasetRequest(dataset_id=dataset_id)))


def _dataset(d) -> Dataset:
    try:
        manifest = json.loads(d.manifest_json) if d.manifest_json else {}
    except json.JSONDecodeError:
        manifest = {"unparsed": d.manifest_json}
    return Dataset(d.dataset_id, d.name, d.n_samples, dict(d.class_counts), d.quality_score, list(d.quality_issues),
                   d.samples_key, manifest)
