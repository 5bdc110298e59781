"""The hourly poll, orchestrated: Ingest.Poll, then Enrich, ComputeFeatures and Score for each batch.

Level-triggered: Ingest.Poll also names earlier alerts batches that lack a later stage's file (a poll that failed
after ingest committed, alerts polled before any model existed) or the predictions of a current champion (asked of
Inference first: the champion moved since; see :mod:`skysift.backlog`), and the poll runs what those lack first,
then its own batches.

The same sequence runs over gRPC (`skysift poll`, the CronJob) or in one process with the stage classes
(`skysift poll --in-process`, for backfills and debugging). Both paths return a :class:`PollReport` so the CLI
prints one thing; only object-store keys travel between stages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from skysift.backlog import Behind, Champion
from skysift.chain import through_stages
from skysift.config import Settings
from skysift.enrichment.core import EnrichmentStage
from skysift.errors import FailedPrecondition, SkysiftError
from skysift.features.stage import FeaturesStage
from skysift.inference.core import InferenceStage
from skysift.ingest.core import IngestStage
from skysift.rpc.channels import channel
from skysift.rpc.convert import batch_from_ref
from skysift.rpc.errors import call
from skysift.store import open_store
from skysift.store.keys import Batch, parse_batch
from skysift.v1 import (
    enrichment_pb2,
    enrichment_pb2_grpc,
    features_pb2,
    features_pb2_grpc,
    inference_pb2,
    inference_pb2_grpc,
    ingest_pb2,
    ingest_pb2_grpc,
)


@dataclass
class StageOutcome:
    stage: str
    batch: Batch | None
    detail: str = ""


@dataclass
class Polled:
    """What Ingest.Poll hands on: its batches, its counts, and the earlier batches that are behind."""

    alerts: list[Batch]
    cutouts: list[Batch]
    counts: dict[str, int]
    dlq_key: str | None
    behind: list[Behind] = field(default_factory=list)
    n_behind: int = 0


@dataclass
class PollReport:
    counts: dict[str, int]
    dlq_key: str | None
    outcomes: list[StageOutcome] = field(default_factory=list)
    caught_up: list[str] = field(default_factory=list)  # one line per earlier batch the poll brought up to date
    n_behind: int = 0
    champions_unknown: str = ""  # why earlier predictions could not be checked against the current champions

    def lines(self) -> list[str]:
        c = self.counts
        out = [
            f"polled {c['messages']} messages: {c['alerts']} alerts kept, {c['rejected']} rejected by filter, "
            f"{c['duplicates']} duplicates, {c['dead_letters']} dead letters"
            + (f" (in {self.dlq_key})" if self.dlq_key else "")
        ]
        if self.champions_unknown:
            out.append(f"earlier predictions not checked against the champions: {self.champions_unknown}")
        if self.n_behind:
            left = self.n_behind - len(self.caught_up)
            out.append(f"caught up {len(self.caught_up)} earlier batches that lacked a stage"
                       + (f" ({left} more left for the next polls)" if left else ""))
            out += [f"  {line}" for line in self.caught_up]
        for o in self.outcomes:
            where = f"{o.batch.rows:>6} rows -> {o.batch.key}" if o.batch else ""
            out.append(f"  {o.stage:<11} {where}{'  ' if where and o.detail else ''}{o.detail}")
        return out


class InProcessStages:
    """Stage classes called directly, sharing one store; each stage is built once and kept across polls
    (a Kafka consumer stays in its group, a loaded model stays loaded)."""

    def __init__(self, settings: Settings, store=None):
        self.settings = settings
        self.store = store or open_store(settings=settings)
        self._stages: dict[type, object] = {}

    def _stage(self, cls: type):
        """The stage of class ``cls``, built on first use (a poll with no alerts never loads a dust map or a model)."""
        if cls not in self._stages:
            self._stages[cls] = cls(self.settings, self.store)
        return self._stages[cls]

    def close(self) -> None:
        """Close the ingest stage's Kafka consumer, if one was opened."""
        if IngestStage in self._stages:
            self._stages[IngestStage].close()

    def champions(self) -> list[Champion]:
        """The current champion of each model tag (loaded here: the poll's scoring uses them); none before the first."""
        try:
            return [(m.name, m.version) for m in self._stage(InferenceStage).models(None).values()]
        except FailedPrecondition:  # no model yet: as the service's ListModels, an empty list
            return []

    def poll(self, **kwargs) -> Polled:
        r = self._stage(IngestStage).poll(**kwargs)
        return Polled(r.alerts, r.cutouts, poll_counts(r), r.dlq_key, r.behind, r.n_behind)

    def enrich(self, alerts_key: str) -> StageOutcome:
        r = self._stage(EnrichmentStage).process(alerts_key)
        return StageOutcome("enrichment", r.enriched, _status(r.status_counts))

    def features(self, alerts_key: str, enriched_key: str | None) -> StageOutcome:
        r = self._stage(FeaturesStage).process(alerts_key, enriched_key)
        return StageOutcome("features", r.features, f"feature set v{r.feature_set_version}, {r.n_flagged} flagged")

    def score(self, features_key: str) -> StageOutcome:
        r = self._stage(InferenceStage).score_batch(features_key)
        return StageOutcome("inference", r.written, "; ".join(filter(None, [_models(r.predictions), r.message])))


class GrpcStages:
    """The same calls through the five services' gRPC APIs."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.ingest = ingest_pb2_grpc.IngestStub(channel(settings.ingest_address, settings))
        self.enrichment = enrichment_pb2_grpc.EnrichmentStub(channel(settings.enrichment_address, settings))
        self.featurizer = features_pb2_grpc.FeaturesStub(channel(settings.features_address, settings))
        self.inference = inference_pb2_grpc.InferenceStub(channel(settings.inference_address, settings))

    def champions(self) -> list[Champion]:
        """The champions the inference service has loaded (it follows the alias every SKYSIFT_INFERENCE_POLL_SECONDS)."""
        r = call(self.inference.ListModels, inference_pb2.ListModelsRequest())
        return [(m.model_name, m.model_version) for m in r.models]

    def poll(self, max_alerts=None, timeout_s=None, replay_path=None, keep_cutouts=None, filter_name=None,
             champions=()):
        req = ingest_pb2.PollRequest(max_alerts=max_alerts or 0, timeout_seconds=timeout_s or 0,
                                     replay_path=replay_path or "", filter=filter_name or "",
                                     champions=[ingest_pb2.ChampionVersion(model_name=n, model_version=v)
                                                for n, v in champions])
        if keep_cutouts is not None:
            req.keep_cutouts = keep_cutouts
        r = call(self.ingest.Poll, req, (timeout_s or 3600) + 120)
        behind = [Behind(b.alerts_key, b.survey, tuple(b.missing)) for b in r.behind]
        return Polled([batch_from_ref(b) for b in r.alerts], [batch_from_ref(b) for b in r.cutouts], poll_counts(r),
                      r.dlq_key or None, behind, r.n_behind)

    def enrich(self, alerts_key: str) -> StageOutcome:
        r = call(self.enrichment.Enrich, enrichment_pb2.EnrichRequest(alerts_key=alerts_key))
        return StageOutcome("enrichment", batch_from_ref(r.enriched), _status(dict(r.status_counts)))

    def features(self, alerts_key: str, enriched_key: str | None) -> StageOutcome:
        r = call(self.featurizer.ComputeFeatures,
                  features_pb2.ComputeFeaturesRequest(alerts_key=alerts_key, enriched_key=enriched_key or ""))
        return StageOutcome("features", batch_from_ref(r.features), f"feature set v{r.feature_set_version}, {r.n_flagged} flagged")

    def score(self, features_key: str) -> StageOutcome:
        r = call(self.inference.Score, inference_pb2.ScoreRequest(features_key=features_key, packed=True))
        models = sorted({f"{p.model_name} v{p.model_version}" for p in r.packed})
        return StageOutcome("inference", batch_from_ref(r.written) if r.written.key else None,
                            "; ".join(filter(None, [", ".join(models), r.message])))


def run_poll(stages, **poll_kwargs) -> PollReport:
    """One poll through every stage, earlier batches that are behind first (those lacking the current champions'
    predictions included); a missing model is reported, not an error (the pipeline still ran)."""
    try:
        champions, unknown = stages.champions(), ""
    except SkysiftError as exc:  # no model yet, or inference/MLflow down: ingest goes on, scoring will say why
        champions, unknown = [], str(exc)
    polled = stages.poll(champions=champions, **poll_kwargs)
    report = PollReport(polled.counts, polled.dlq_key, n_behind=polled.n_behind, champions_unknown=unknown)
    catch_up(stages, polled.behind, report)
    for batch in polled.cutouts:
        report.outcomes.append(StageOutcome("cutouts", batch))
    for batch, enriched, feats in through_stages(
            polled.alerts, lambda batch: stages.enrich(batch.key),
            lambda batch, enriched: stages.features(batch.key, enriched.batch.key if enriched.batch else None)):
        report.outcomes += [StageOutcome("alerts", batch, f"survey={batch.survey}"), enriched, feats]
        try:
            report.outcomes.append(stages.score(feats.batch.key))
        except FailedPrecondition as exc:
            report.outcomes.append(StageOutcome("inference", None, str(exc)))
    return report


def catch_up(stages, behind: list[Behind], report: PollReport) -> None:
    """Run what each earlier batch lacks, in stage order; once scoring finds no model, the rest wait for one. A
    re-score that fails (a champion exists, so the failure is this batch's, e.g. features of another feature-set
    version) holds back that batch only; inference marks such a batch so it is not offered again to that champion
    (:func:`skysift.backlog.mark_unscorable`)."""
    no_model = ""
    for item in behind:
        batch = parse_batch(item.alerts_key, "alerts")
        enriched_key, done, failed = str(batch.sibling("enriched")), [], ""
        if "enriched" in item.missing:
            enriched = stages.enrich(item.alerts_key)
            enriched_key = enriched.batch.key if enriched.batch else None
            done.append("enriched")
        if "features" in item.missing:
            stages.features(item.alerts_key, enriched_key)
            done.append("features")
        if not no_model:
            try:
                stages.score(str(batch.sibling("features")))
                done.append("predictions")
            except FailedPrecondition as exc:
                if item.rescore:
                    failed = str(exc)
                else:
                    no_model = str(exc)
        waiting = f" (predictions wait: {failed or no_model})" if "predictions" not in done else ""
        report.caught_up.append(f"{item.alerts_key}: {', '.join(done) or 'nothing'} written{waiting}")


def poll_counts(result) -> dict[str, int]:
    """The counts of a poll, from a PollResult or a PollResponse (the same field names)."""
    return dict(messages=result.n_messages, alerts=result.n_alerts, rejected=result.n_rejected,
                duplicates=result.n_duplicates, dead_letters=result.n_dead_letters)


def _status(counts: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))


def _models(predictions) -> str:
    if predictions is None or predictions.num_rows == 0:
        return ""
    pairs = {(n, v) for n, v in zip(predictions.column("model_name").to_pylist(), predictions.column("model_version").to_pylist())}
    return ", ".join(f"{n} v{v}" for n, v in sorted(pairs))
