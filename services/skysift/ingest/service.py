"""skysift.v1.Ingest: translates PollRequest/PollResponse to :class:`~skysift.ingest.core.IngestStage` calls."""

from __future__ import annotations

import threading

from skysift import config, validation
from skysift.config import Settings
from skysift.ingest.core import IngestStage, PollResult
from skysift.ingest.settings import IngestSettings
from skysift.rpc.convert import batch_ref
from skysift.rpc.errors import grpc_method
from skysift.store import open_store
from skysift.v1 import ingest_pb2, ingest_pb2_grpc

SERVICE_NAME = "skysift.v1.Ingest"


class IngestServicer(ingest_pb2_grpc.IngestServicer):
    def __init__(self, settings: Settings, store=None, ingest: IngestSettings | None = None):
        self.ingest = ingest or config.load(IngestSettings)
        self.stage = IngestStage(settings, store or open_store(settings=settings), self.ingest)
        # one poll at a time: two concurrent polls would split one consumer group's partitions between them
        self._lock = threading.Lock()

    @grpc_method
    def Poll(self, request: ingest_pb2.PollRequest, context) -> ingest_pb2.PollResponse:
        validation.check_count(request.max_alerts, "max_alerts")
        validation.check_timeout(request.timeout_seconds)
        champions = validation.check_champions([(c.model_name, c.model_version) for c in request.champions])
        with self._lock:
            result = self.stage.poll(
                max_alerts=request.max_alerts or None,
                timeout_s=request.timeout_seconds or None,
                replay_path=(self.ingest.check_replay_path(request.replay_path, self.stage.store.url)
                             if request.replay_path else None),
                keep_cutouts=request.keep_cutouts if request.HasField("keep_cutouts") else None,
                filter_name=request.filter or None,
                champions=champions,
            )
        return to_response(result)


def to_response(result: PollResult) -> ingest_pb2.PollResponse:
    return ingest_pb2.PollResponse(
        alerts=[batch_ref(b) for b in result.alerts], cutouts=[batch_ref(b) for b in result.cutouts],
        n_messages=result.n_messages, n_alerts=result.n_alerts, n_rejected=result.n_rejected,
        n_duplicates=result.n_duplicates, n_dead_letters=result.n_dead_letters, dlq_key=result.dlq_key or "",
        behind=[ingest_pb2.BehindBatch(alerts_key=b.alerts_key, survey=b.survey, missing=b.missing)
                for b in result.behind],
        n_behind=result.n_behind,
    )


_SERVED: list[IngestServicer] = []  # what close() closes when `skysift serve ingest` stops


def register(server, settings: Settings) -> list[str]:
    servicer = IngestServicer(settings)
    ingest_pb2_grpc.add_IngestServicer_to_server(servicer, server)
    _SERVED.append(servicer)
    return [SERVICE_NAME]


def close() -> None:
    """Leave the Kafka consumer group now (called once the server has drained): a consumer left to time out keeps
    its partitions from the next poller for a whole session timeout."""
    while _SERVED:
        _SERVED.pop().stage.close()
