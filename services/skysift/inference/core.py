"""Inference: score features with the champion model of each model tag, and hand the results to the sinks.

Three ways in, one scoring path (:func:`score_rows`), so they agree to the last bit:
- a stored features batch by key (the hourly poll): predictions are written beside it under ``predictions/``,
  then the configured sinks (CSV, SkyPortal, Slack) run;
- candids of alerts already through the features stage: rows come from an in-memory index of ``features/``;
- raw alert packets sent inline: decode → (enrichment) → features in process.

Speed matters for gRPC clients (tens of thousands of alerts/s in batches, a few ms for one alert): models stay
in memory (:mod:`.registry`), features go to the model as one numpy matrix (for candids, rows of a matrix cached
per stored batch), results stay numpy arrays (:class:`Scores`) until a response or the predictions table is
built from them, and nothing on the hot path talks to MLflow or the store; that happens in the background poll.
The maths is in :mod:`.scoring`, the candid lookup in :mod:`.rows`; this module is the stage that joins them.
"""

from __future__ import annotations

import logging

import pyarrow as pa
import pyarrow.compute as pc

from skysift import config
from skysift.alerts.batches import object_ids
from skysift.alerts.decode import packets_of
from skysift.backlog import mark_unscorable
from skysift.chain import Enrich, features_of_packets
from skysift.config import Settings
from skysift.enrichment.core import Enricher
from skysift.errors import FailedPrecondition, InvalidArgument
from skysift.inference.registry import ChampionRegistry, LoadedModel
from skysift.inference.rows import CandidIndex
from skysift.inference.scoring import (
    ScoreResult,
    batch_feature_set_version,
    score_features,
    score_rows,
    with_object_ids,
)
from skysift.inference.settings import InferenceSettings
from skysift.inference.sinks import Scored, build_sinks, run_sinks
from skysift.inference.sinks.parquet import write_predictions
from skysift.store import keys
from skysift.store.base import ObjectStore

log = logging.getLogger(__name__)

class InferenceStage:
    """Score features with the champion models; ``score_batch`` also writes predictions and runs the sinks."""

    def __init__(self, settings: Settings, store: ObjectStore, inference_settings: InferenceSettings | None = None,
                 registry: ChampionRegistry | None = None, enrich: Enrich | None = None):
        self.settings = settings
        self.store = store
        self.config = inference_settings or config.load(InferenceSettings)
        self.registry = registry or ChampionRegistry(settings.mlflow_tracking_uri, self.config.model_tags,
                                                     self.config.alias, model_prefix=settings.mlflow_model_prefix)
        self.index = CandidIndex(store, self.config.cached_batches)
        self.sinks = build_sinks(self.config)
        # ScoreAlerts asking for enrichment: the enrichment stage's computation, nothing written (the dust map is
        # loaded on first use)
        self.enrich = enrich or Enricher(store)

    def start_polling(self) -> None:
        """Reload moved champions and index new features batches in the background (services call this)."""
        self.registry.start_polling(self.config.poll_seconds, also=self.index.refresh)

    def close(self) -> None:
        self.registry.close()

    def tags(self, model_tags: list[str] | None) -> list[str]:
        if not model_tags:
            return list(self.config.model_tags)
        unknown = [t for t in model_tags if t not in self.config.model_tags]
        if unknown:
            raise InvalidArgument(f"model tag(s) {unknown} not served here; served: {self.config.model_tags} "
                                  "(SKYSIFT_INFERENCE_MODEL_TAGS)")
        return list(dict.fromkeys(model_tags))

    def models(self, model_tags: list[str] | None, notes: list[str] | None = None) -> dict[str, LoadedModel]:
        """The loaded model of each tag asked for. Without an explicit list, a served tag that has no champion
        yet is left out (noted in ``notes``) as long as another tag has one: training one model must not keep
        the others' predictions from every poll."""
        if model_tags:
            return {tag: self.registry.get(tag) for tag in self.tags(model_tags)}
        loaded, missing = {}, []
        for tag in self.tags(None):
            try:
                loaded[tag] = self.registry.get(tag)
            except FailedPrecondition as exc:
                missing.append(exc)
        if not loaded and missing:
            raise missing[0]
        if notes is not None:
            notes += [str(exc) for exc in missing]
        return loaded

    def score_batch(self, features_key: str, model_tags: list[str] | None = None, write: bool = True) -> ScoreResult:
        """Score a stored features batch; with ``write``, predictions/ parquet first, then the sinks."""
        batch = keys.parse_batch(features_key, "features")
        features = self.store.read_table(features_key)
        features = with_object_ids(features, object_ids(self.store, batch, features.column("candid")))
        notes: list[str] = []
        models = self._able(batch, batch_feature_set_version(features), self.models(model_tags, notes), notes,
                            mark=write, asked=bool(model_tags))
        result = ScoreResult(score_features(features, models), notes=notes)
        if write:
            result.written = write_predictions(self.store, batch, result.predictions,
                                               [(m.name, m.version) for m in result.models.values()])
            result.sinks = run_sinks(self.sinks, Scored(result.predictions, result.models, result.written))
        return result

    def _able(self, batch: keys.BatchKey, version: str, models: dict[str, LoadedModel], notes: list[str],
              mark: bool, asked: bool) -> dict[str, LoadedModel]:
        """The models to score the batch with. One trained on another feature-set version than the batch's gets
        (with ``mark``) a "cannot score" marker, so the poll's backlog stops offering it the batch until that
        champion changes; unless its tag was ``asked`` for, it is left out (noted) while another model can score,
        as a tag without a champion is: one model's features must not keep the others' predictions from a batch.
        Otherwise they are all returned and scoring refuses, naming it."""
        unable = {tag: m for tag, m in models.items() if m.feature_set_version != version}
        for m in unable.values():
            if mark:
                mark_unscorable(self.store, batch, (m.name, m.version),
                                f"trained on feature set version {m.feature_set_version}, the batch is version {version}")
        if asked or len(unable) == len(models):
            return models
        notes += [f"model {m.name} v{m.version} left out: trained on feature set version {m.feature_set_version}, "
                  f"these features are version {version}" for m in unable.values()]
        return {tag: m for tag, m in models.items() if tag not in unable}

    def score_candids(self, candids: list[int], model_tags: list[str] | None = None) -> ScoreResult:
        """Score alerts already through the features stage; for cached batches nothing is read from the store."""
        if len(candids) == 0:
            raise InvalidArgument("no candids given")
        self.tags(model_tags)  # an unknown tag is the caller's error, before any lookup
        found = self.index.rows(candids)
        notes: list[str] = []
        return ScoreResult(score_rows(found.versions, found.candid, found.object_id(), found.matrix,
                                      self.models(model_tags, notes)), notes=notes)

    def score_alerts(self, packets: list[bytes], format: str = "auto", schema_json: str | None = None,
                     model_tags: list[str] | None = None, enrich: bool = False) -> ScoreResult:
        """Decode raw packets, compute their features (with enrichment if asked) and score them; nothing written."""
        if len(packets) == 0:
            raise InvalidArgument("no packets given")
        self.tags(model_tags)
        chained = features_of_packets(packets_of(list(packets), format or "auto", schema_json or None),
                                      self.enrich if enrich else None)
        dead_letters = chained.decoded.dead_letters
        notes = []
        if dead_letters:
            notes.append(f"{len(dead_letters)} of {len(packets)} packets could not be decoded: "
                         + _dead_letter_reason(dead_letters))
        scores = []
        for part in chained.surveys:
            features = with_object_ids(part.features, _align(part.features.column("candid"), part.alerts))
            scores += score_features(features, self.models(model_tags, notes))
        if not scores:
            raise InvalidArgument(f"no alert could be decoded from {len(packets)} packets"
                                  + (f": {notes[0]}" if notes else ""))
        return ScoreResult(scores, notes=notes)


def _align(candids: pa.ChunkedArray, alerts: pa.Table) -> pa.Array:
    where = pc.index_in(candids, value_set=alerts.column("candid").combine_chunks())
    return alerts.column("objectId").combine_chunks().take(where)


def _dead_letter_reason(dead_letters: list[tuple[bytes, str]]) -> str:
    return str(dead_letters[0][1])[:300]
