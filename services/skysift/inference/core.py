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
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pyarrow as pa

from skysift import config
from skysift.config import Settings
from skysift.errors import FailedPrecondition, InvalidArgument, NotFound
from skysift.inference.registry import ChampionRegistry, LoadedModel
from skysift.inference.settings import InferenceSettings
from skysift.inference.sinks import Scored, SinkReport, build_sinks, run_sinks
from skysift.inference.sinks.parquet import write_predictions
from skysift.store import keys
from skysift.store.base import ObjectStore
from skysift.store.keys import Batch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scores:
    """One model's probabilities for a run of alerts: what both response forms and the predictions table are
    built from."""

    tag: str
    model: LoadedModel
    candid: np.ndarray  # int64 (n,)
    object_id: np.ndarray  # object (n,): str, or None when unknown
    probabilities: np.ndarray  # float64 (n, len(model.taxonomy.nodes)), the taxonomy's pre-order

    def __len__(self) -> int:
        return len(self.candid)

    def rows(self, start: int, stop: int) -> Scores:
        return Scores(self.tag, self.model, self.candid[start:stop], self.object_id[start:stop],
                      self.probabilities[start:stop])


@dataclass
class ScoreResult:
    """Scores per model tag (in request order) and what was written."""

    scores: list[Scores]
    written: Batch | None = None
    sinks: list[SinkReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def models(self) -> dict[str, LoadedModel]:
        return {s.tag: s.model for s in self.scores}

    @cached_property
    def predictions(self) -> pa.Table:
        """One row per alert and model tag, ``prob_<class>`` columns in pre-order (built on first use)."""
        return predictions_table(self.scores)

    @property
    def message(self) -> str:
        """One line for the caller: failed sinks and anything dropped on the way (undecodable packets)."""
        parts = list(dict.fromkeys(self.notes)) + [str(r) for r in self.sinks if not r.ok]
        return "; ".join(parts)


def current_feature_set_version() -> str:
    from skysift.features.core import FEATURE_SET_VERSION

    return FEATURE_SET_VERSION


def batch_feature_set_version(table: pa.Table) -> str:
    """The version a features table was computed with (its parquet metadata), else the running code's."""
    from skysift.features.core import VERSION_METADATA_KEY

    meta = table.schema.metadata or {}
    value = meta.get(VERSION_METADATA_KEY.encode())
    return value.decode() if value else current_feature_set_version()


def check_feature_set(model: LoadedModel, version: str) -> None:
    if model.feature_set_version != version:
        raise FailedPrecondition(
            f"model {model.name} v{model.version} was trained on feature set version {model.feature_set_version}, "
            f"but these features are version {version}: train a model on the current features (`skysift round`) "
            f"or recompute the features with the version the model knows"
        )


def feature_matrix(table: pa.Table, columns: tuple[str, ...]) -> np.ndarray:
    """float64 (n, k) in the model's column order; nulls become NaN (HistGradientBoosting handles them)."""
    names = set(table.schema.names)  # Table.column_names builds a list per call: ~0.7 ms over 20 lookups
    missing = [c for c in columns if c not in names]
    if missing:
        raise FailedPrecondition(f"features lack column(s) the model was trained on: {', '.join(missing)}")
    X = np.empty((table.num_rows, len(columns)), dtype=np.float64)
    for j, name in enumerate(columns):
        col = table.column(name)
        if col.null_count:
            col = col.cast(pa.float64()).fill_null(np.nan)
        X[:, j] = col.to_numpy()
    return X


def object_ids(store: ObjectStore, features: keys.BatchKey, candids: pa.Array) -> pa.Array:
    """objectIds for ``candids`` from the batch's alerts/ sibling (the features table does not carry them)."""
    key = str(features.sibling("alerts"))
    try:
        ids = store.read_table(key, columns=["candid", "objectId"])
    except NotFound:
        log.warning("no alerts batch beside features: objectId left null", extra={"alerts_key": key})
        return pa.nulls(len(candids), pa.string())
    import pyarrow.compute as pc

    where = pc.index_in(candids, value_set=ids.column("candid").combine_chunks())
    return ids.column("objectId").combine_chunks().take(where)


def with_object_ids(table: pa.Table, object_id: pa.Array) -> pa.Table:
    if "objectId" in table.column_names:
        return table
    return table.append_column("objectId", object_id)


def score_rows(versions: Iterable[str], candid: np.ndarray, object_id: np.ndarray,
               matrix: Callable[[tuple[str, ...]], np.ndarray], models: dict[str, LoadedModel]) -> list[Scores]:
    """The one scoring path: ``models`` (tag → model) on alerts whose features are of ``versions``;
    ``matrix(columns)`` gives their float64 feature matrix in that column order (asked once per column set)."""
    versions = set(versions)
    for model in models.values():
        for version in versions:
            check_feature_set(model, version)
    matrices: dict[tuple[str, ...], np.ndarray] = {}
    out = []
    for tag, model in models.items():
        X = matrices.get(model.feature_columns)
        if X is None:
            X = matrices[model.feature_columns] = matrix(model.feature_columns)
        n_nodes = len(model.taxonomy.nodes)
        probs = model.taxonomy.node_probabilities(model.predict(X)) if len(X) else np.empty((0, n_nodes))
        out.append(Scores(tag, model, candid, object_id, probs))
    return out


def score_features(features: pa.Table, models: dict[str, LoadedModel]) -> list[Scores]:
    """:func:`score_rows` on a features table (with ``candid``; ``objectId`` when known)."""
    n = features.num_rows
    object_id = (features.column("objectId").to_numpy(zero_copy_only=False) if "objectId" in features.schema.names
                 else np.full(n, None, dtype=object))
    return score_rows([batch_feature_set_version(features)], features.column("candid").to_numpy().astype(np.int64),
                      object_id, lambda columns: feature_matrix(features, columns), models)


def predictions_table(scores: list[Scores]) -> pa.Table:
    """One row per alert and tag, ``prob_<class>`` columns in each taxonomy's pre-order (a column a tag lacks is
    null): what predictions/ parquet and the sinks take."""
    tables = []
    for s in scores:
        n, model = len(s), s.model
        columns = {
            "candid": pa.array(s.candid, pa.int64()),
            "objectId": pa.array(s.object_id, pa.string()),
            "model_tag": pa.array([s.tag] * n, pa.string()),
            "model_name": pa.array([model.name] * n, pa.string()),
            "model_version": pa.array([model.version] * n, pa.string()),
            "feature_set_version": pa.array([model.feature_set_version] * n, pa.string()),
        }
        for j, node in enumerate(model.taxonomy.nodes):
            columns[node.column] = s.probabilities[:, j]
        tables.append(pa.table(columns))
    table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
    return table.replace_schema_metadata({"skysift.table": "predictions"})


def score_table(features: pa.Table, models: dict[str, LoadedModel]) -> pa.Table:
    """Predictions of ``models`` (tag → model) for ``features`` as a table (see :func:`predictions_table`)."""
    return predictions_table(score_features(features, models))


@dataclass
class CachedBatch:
    """A features batch in memory: its table (with objectIds), feature-set version, and a feature matrix per
    model column set, built on first use, so that a candid lookup is a row gather, not an Arrow take."""

    table: pa.Table
    version: str
    object_id: np.ndarray  # object: str, or None when unknown
    matrices: dict[tuple[str, ...], np.ndarray] = field(default_factory=dict)

    @classmethod
    def of(cls, table: pa.Table) -> CachedBatch:
        return cls(table, batch_feature_set_version(table), table.column("objectId").to_numpy(zero_copy_only=False))

    def matrix(self, columns: tuple[str, ...]) -> np.ndarray:
        X = self.matrices.get(columns)
        if X is None:  # two threads may both build it: the same values, one kept
            X = self.matrices[columns] = feature_matrix(self.table, columns)
        return X


@dataclass
class FoundRows:
    """A request's features rows, still in their cached batches: ``parts`` holds (batch, its rows, the positions
    of those rows in the request)."""

    candid: np.ndarray
    parts: list[tuple[CachedBatch, np.ndarray, np.ndarray]]

    @property
    def versions(self) -> set[str]:
        return {batch.version for batch, _, _ in self.parts}

    def object_id(self) -> np.ndarray:
        return self._gather(lambda batch: batch.object_id, np.empty(len(self.candid), dtype=object))

    def matrix(self, columns: tuple[str, ...]) -> np.ndarray:
        return self._gather(lambda batch: batch.matrix(columns), np.empty((len(self.candid), len(columns))))

    def _gather(self, source: Callable[[CachedBatch], np.ndarray], out: np.ndarray) -> np.ndarray:
        if len(self.parts) == 1:  # one batch: positions are the request's order, no scatter needed
            batch, rows, _ = self.parts[0]
            return source(batch)[rows]
        for batch, rows, positions in self.parts:
            out[positions] = source(batch)[rows]
        return out


class CandidIndex:
    """Where each candid's features row lives: sorted candids → (batch, row), built from ``features/``.

    Only the candid arrays of every batch are kept (16 bytes a row); the batches themselves sit in a small LRU
    (:class:`CachedBatch`). Refreshed in the background and once on a miss, so a lookup of candids in cached
    batches is a binary search and a row gather, without touching the store.
    """

    def __init__(self, store: ObjectStore, cached_batches: int = 64):
        self.store = store
        self.cached_batches = cached_batches
        self._refreshed = -1e9
        self._keys: list[str] = []
        self._per_key: list[np.ndarray] = []
        self._sorted = np.empty(0, np.int64)
        self._where = np.empty((0, 2), np.int64)  # (key index, row) per sorted candid
        self._batches: OrderedDict[str, CachedBatch] = OrderedDict()
        self._lock = threading.Lock()

    def refresh(self, unless_since: float | None = None) -> int:
        """Index new features batches; return how many were added.

        ``unless_since``: skip when a refresh started after that time (concurrent misses list the store once).
        """
        with self._lock:
            if unless_since is not None and self._refreshed >= unless_since:
                return 0
            self._refreshed = time.monotonic()
            known = set(self._keys)
            new = [k for k in self.store.list_keys("features/") if k.endswith("_features.parquet") and k not in known]
            for key in new:
                try:
                    batch = self._load(key)
                except FailedPrecondition as exc:  # one unreadable object must not stop every candid lookup
                    log.warning("skipping unreadable features batch", extra={"key": key, "error": str(exc)})
                    continue
                self._keys.append(key)
                self._per_key.append(batch.table.column("candid").to_numpy())
            if new:
                self._rebuild()
            return len(new)

    def _rebuild(self) -> None:
        candids = np.concatenate(self._per_key) if self._per_key else np.empty(0, np.int64)
        where = np.concatenate([np.column_stack([np.full(len(c), i), np.arange(len(c))])
                                for i, c in enumerate(self._per_key)]) if self._per_key else np.empty((0, 2), np.int64)
        order = np.argsort(candids, kind="stable")
        candids, where = candids[order], where[order]
        last = np.r_[candids[1:] != candids[:-1], True] if len(candids) else np.empty(0, bool)
        self._sorted, self._where = candids[last], where[last]  # a candid in several batches: the latest indexed

    def _load(self, key: str) -> CachedBatch:
        """A features batch with its objectIds, cached (least recently used dropped first)."""
        batch = self._batches.get(key)
        if batch is not None:
            self._batches.move_to_end(key)
            return batch
        table = self.store.read_table(key)
        table = with_object_ids(table, object_ids(self.store, keys.parse_batch(key), table.column("candid")))
        batch = self._batches[key] = CachedBatch.of(table)
        while len(self._batches) > self.cached_batches:
            self._batches.popitem(last=False)
        return batch

    def _locate(self, candids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sorted_, where = self._sorted, self._where  # one consistent snapshot
        pos = np.searchsorted(sorted_, candids)
        pos = np.minimum(pos, max(len(sorted_) - 1, 0))
        found = (sorted_[pos] == candids) if len(sorted_) else np.zeros(len(candids), bool)
        return found, where[pos] if len(sorted_) else np.empty((len(candids), 2), np.int64)

    def rows(self, candids: list[int]) -> FoundRows:
        """Features rows of ``candids`` in the order given; NotFound names the missing."""
        started = time.monotonic()
        wanted = np.asarray(candids, dtype=np.int64)
        found, where = self._locate(wanted)
        if not found.all():
            self.refresh(unless_since=started)
            found, where = self._locate(wanted)
        if not found.all():
            missing = wanted[~found]
            raise NotFound(
                f"{len(missing)} of {len(wanted)} candids are in no features/ batch of {self.store.url}: "
                f"{missing[:10].tolist()}{' ...' if len(missing) > 10 else ''} (run the features stage, or send the "
                "raw packets to ScoreAlerts)"
            )
        key_of = where[:, 0]
        with self._lock:
            if len(key_of) and (key_of == key_of[0]).all():  # the usual case: one batch (and always for one candid)
                parts = [(self._load(self._keys[key_of[0]]), where[:, 1], np.arange(len(wanted)))]
            else:
                parts = []
                for key_index in np.unique(key_of):
                    positions = np.flatnonzero(key_of == key_index)
                    parts.append((self._load(self._keys[key_index]), where[positions, 1], positions))
        return FoundRows(wanted, parts)


class InferenceStage:
    """Score features with the champion models; ``score_batch`` also writes predictions and runs the sinks."""

    def __init__(self, settings: Settings, store: ObjectStore, inference_settings: InferenceSettings | None = None,
                 registry: ChampionRegistry | None = None):
        self.settings = settings
        self.store = store
        self.config = inference_settings or config.load(InferenceSettings)
        self.registry = registry or ChampionRegistry(settings.mlflow_tracking_uri, self.config.model_tags,
                                                     self.config.alias, model_prefix=settings.mlflow_model_prefix)
        self.index = CandidIndex(store, self.config.cached_batches)
        self.sinks = build_sinks(self.config)
        self._enrichment = None  # built on the first ScoreAlerts asking for enrichment (it loads a dust map)

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
        result = ScoreResult(score_features(features, self.models(model_tags, notes)), notes=notes)
        if write:
            result.written = write_predictions(self.store, batch, result.predictions)
            result.sinks = run_sinks(self.sinks, Scored(result.predictions, result.models, result.written))
        return result

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
        from skysift.alerts.decode import decode_packets
        from skysift.features.core import compute_features

        if len(packets) == 0:
            raise InvalidArgument("no packets given")
        self.tags(model_tags)
        decoded = decode_packets(list(packets), format=format or "auto", schema_json=schema_json or None)
        notes = []
        if decoded.dead_letters:
            notes.append(f"{len(decoded.dead_letters)} of {len(packets)} packets could not be decoded: "
                         + _dead_letter_reason(decoded.dead_letters))
        scores = []
        for survey, alerts in decoded.alerts.items():
            if alerts.num_rows == 0:
                continue
            enriched = self._enrich(survey, alerts) if enrich else None
            features = compute_features(alerts, enriched)
            features = with_object_ids(features, _align(features.column("candid"), alerts))
            scores += score_features(features, self.models(model_tags, notes))
        if not scores:
            raise InvalidArgument(f"no alert could be decoded from {len(packets)} packets"
                                  + (f": {notes[0]}" if notes else ""))
        return ScoreResult(scores, notes=notes)

    def _enrich(self, survey: str, alerts: pa.Table) -> pa.Table:
        """The enrichment stage's own computation (Sherlock through its cache, E(B-V)), nothing written."""
        from skysift.enrichment.core import EnrichmentStage, enrich

        if self._enrichment is None:
            self._enrichment = EnrichmentStage(self.settings, self.store)
        return enrich(alerts, self._enrichment.sherlock_for(survey), self._enrichment.extinction)


def _align(candids: pa.ChunkedArray, alerts: pa.Table) -> pa.Array:
    import pyarrow.compute as pc

    where = pc.index_in(candids, value_set=alerts.column("candid").combine_chunks())
    return alerts.column("objectId").combine_chunks().take(where)


def _dead_letter_reason(dead_letters: list[tuple[bytes, str]]) -> str:
    return str(dead_letters[0][1])[:300]
