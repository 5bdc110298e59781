"""The pool a round ranks: stored feature rows (one per candid), filtered, with their objects.

The pool is every ``features/`` batch in the store with the current feature-set version, deduplicated by
candid (the latest batch wins). :func:`load_pool` holds it whole (one float64 per feature and row, ~22 columns:
~180 B a row, held as several copies), for experiments and datasets; a round reads it as a stream
(:func:`round_pool`, ranked by :mod:`.streamed`) and holds ~9 bytes a row plus one features batch.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from skysift import errors
from skysift.alerts import batches
from skysift.concurrency import threaded_map
from skysift.features.core import feature_batches, feature_set_version
from skysift.store import keys
from skysift.store.base import parquet_errors
from skysift.trainer.streamed import Pool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureSpec:
    """Which columns a model is trained on, in order, and the feature-set version they belong to."""

    columns: tuple[str, ...]
    version: str

    @classmethod
    def current(cls) -> FeatureSpec:
        """The feature set this deployment computes (SKYSIFT_FEATURES_VERSION)."""
        from skysift.features.sets import configured

        feature_set = configured()
        return cls(tuple(feature_set.columns), feature_set.version)


@dataclass(frozen=True)
class PoolFilter:
    """Which alerts may be queued: alerts too poor to decide on (one detection, no light curve in the band)
    would otherwise flood an uncertainty queue at p ~ 0.5. Empty fields filter nothing."""

    survey: str = ""
    band: str = ""  # the alert has light-curve features in this band (e.g. ``median_r`` is set)
    min_detections: int = 0

    def apply(self, pool: pd.DataFrame) -> pd.DataFrame:
        return pool[self.mask(pool)].reset_index(drop=True)

    def columns(self, feature_columns) -> list[str]:
        """The feature columns :meth:`mask` reads (besides ``features_key``)."""
        band = [c for c in feature_columns if self.band and c.endswith(f"_{self.band}")]
        return band + (["ndets"] if self.min_detections and "ndets" in feature_columns else [])

    def mask(self, pool: pd.DataFrame) -> np.ndarray:
        """Which rows of ``pool`` pass."""
        keep = np.ones(len(pool), dtype=bool)
        if self.survey:  # parsed once per batch key, not once per row (a batch's rows share their key)
            batch_keys = pool["features_key"]
            in_survey = {k: keys.parse_batch(k).survey == self.survey for k in batch_keys.unique()}
            keep &= batch_keys.map(in_survey).to_numpy(dtype=bool)
        if self.band:
            band_columns = [c for c in pool.columns if c.endswith(f"_{self.band}")]
            if not band_columns:
                raise errors.InvalidArgument(f"no feature column for band {self.band!r}")
            keep &= pool[band_columns].notna().any(axis=1).to_numpy()
        if self.min_detections:
            if "ndets" not in pool:
                raise errors.InvalidArgument("the feature set has no `ndets` column to filter detections on")
            keep &= (pool["ndets"].fillna(0) >= self.min_detections).to_numpy()
        return keep

    def describe(self) -> str:
        parts = [f"survey {self.survey}" if self.survey else "", f"band {self.band}" if self.band else "",
                 f">= {self.min_detections} detections" if self.min_detections else ""]
        return ", ".join(p for p in parts if p)


def load_pool(store, spec: FeatureSpec, threads: int = 8, batch_keys: list[str] | None = None) -> pd.DataFrame:
    """Every stored feature row of the current feature-set version, one per candid (the latest batch wins).

    Columns: candid, the feature columns, ``features_key`` (the batch it came from) and ``objectId`` when the
    features table carries it. Batches of another version, or without every feature column, are skipped.
    ``batch_keys`` restricts the read to those batches (default: all).
    """
    batch_keys = sorted(feature_batches(store) if batch_keys is None else batch_keys)

    if not batch_keys:
        return empty_pool(spec)
    tables = [t for t in threaded_map(lambda key: _features_table(store, spec, key), batch_keys, threads)
              if t is not None]
    if not tables:
        return empty_pool(spec)
    table = pa.concat_tables(tables, promote_options="default")
    df = table.to_pandas()
    # keys sort by night and poll time: keep each candid's last occurrence
    df = df.drop_duplicates("candid", keep="last").reset_index(drop=True)
    df["candid"] = df["candid"].astype("int64")
    return df


def _features_table(store, spec: FeatureSpec, key: str) -> pa.Table | None:
    """A features batch's candid, feature columns, objectId (when present) and ``features_key``; None when it
    belongs to another feature set."""
    batch = _Batch.read(store, spec, key)
    if batch is None:
        return None
    table = batch.columns(["candid", *spec.columns, *batch.optional("objectId")])
    return table.append_column("features_key", pa.array([key] * table.num_rows, pa.string()))


@dataclass
class _Batch:
    """A features batch of the current feature set, fetched once (one GET); its columns decoded on demand, so a
    pass reads only those it uses (the pool's first pass: the candids, ~1/20 of the decoding)."""

    key: str
    file: pq.ParquetFile
    url: str

    @classmethod
    def read(cls, store, spec: FeatureSpec, key: str) -> _Batch | None:
        """The batch at ``key``, or None (with a warning) when it belongs to another feature set."""
        data = store.get_bytes(key)
        with parquet_errors(key, store.url):
            file = pq.ParquetFile(pa.BufferReader(data))
        version = feature_set_version(file.schema_arrow)
        if (version is not None and version != spec.version) or not set(spec.columns) <= set(file.schema_arrow.names):
            log.warning("skipping features batch of another feature set", extra={"key": key})
            return None
        return cls(key, file, store.url)

    def optional(self, *names: str) -> list[str]:
        """Those of ``names`` the batch has."""
        return [n for n in names if n in self.file.schema_arrow.names]

    def columns(self, names: list[str]) -> pa.Table:
        with parquet_errors(self.key, self.url):
            return self.file.read(columns=list(dict.fromkeys(names))).replace_schema_metadata(None)


def empty_pool(spec: FeatureSpec) -> pd.DataFrame:
    """No rows, with the dtypes of a read pool: an untyped empty frame cannot be merged on candid."""
    return pd.DataFrame({"candid": pd.Series(dtype="int64"), **{c: pd.Series(dtype="float64") for c in spec.columns},
                         "features_key": pd.Series(dtype="object")})


def batch_object_ids(store, features_key: str, rows: pd.DataFrame) -> np.ndarray:
    """The objectIds of one features batch's ``rows`` ('' when unknown): from the features table when it
    carries them, else from the alerts batch beside it."""
    if "objectId" in rows and rows["objectId"].notna().all():
        return rows["objectId"].to_numpy(dtype=object)
    batch = keys.parse_batch(features_key, "features")
    found = batches.object_ids(store, batch, pa.array(rows["candid"].to_numpy(dtype="int64"), pa.int64()))
    return np.array([o or "" for o in found.to_pylist()], dtype=object)


@dataclass
class RoundPool:
    """A round's pool read as a stream (see :func:`round_pool`): the unlabelled rows it may queue, one features
    batch at a time, and the labelled rows (latest batch wins) with their ``objectId``, held whole (few)."""

    unlabelled: Pool
    labelled: pd.DataFrame
    of_labelled_objects: pd.DataFrame  # with an object-level tag: the other alerts of labelled objects (few)


def round_pool(store, spec: FeatureSpec, pool_filter: PoolFilter, labelled: set[int],
               labelled_objects: set[str] | None, threads: int = 8) -> RoundPool:
    """The pool of :func:`load_pool` without holding it: a first pass keeps, per features batch, which rows
    may be queued (their candid is the latest occurrence, they pass ``pool_filter``, carry no label and, with
    ``labelled_objects`` (an object-level tag), belong to no labelled object); the stream reads each batch again.
    With ``labelled_objects``, the unlabelled alerts of labelled objects (in the survey) are read too: an
    object's label may train them (:func:`answered_by_object`).

    Resident per pool row: a candid (8 bytes) for the deduplication and a mask byte; with ``labelled_objects``
    a 64-bit hash of the objectId (a collision could hide an alert: ~1e-10 at 10M alerts and 10k objects).
    """
    batch_keys = sorted(feature_batches(store))
    seen = []  # per batch: key, candids, queueable, unlabelled in the survey, its rows' object hash
    labelled_parts, labelled_candids = [], np.fromiter(labelled, dtype="int64", count=len(labelled))
    filter_columns = pool_filter.columns(spec.columns)
    for key, batch in _in_order(batch_keys, lambda key: _Batch.read(store, spec, key), threads):
        if batch is None:
            continue
        df = batch.columns(["candid", *filter_columns, *batch.optional("objectId")]).to_pandas()
        df["features_key"] = key
        candids = df["candid"].to_numpy(dtype="int64")
        is_labelled = np.isin(candids, labelled_candids)
        surveyed = PoolFilter(survey=pool_filter.survey).mask(df) & ~is_labelled
        queueable = pool_filter.mask(df) & surveyed
        if is_labelled.any():
            rows = _rows(batch, spec, is_labelled)
            rows["objectId"] = batch_object_ids(store, key, rows)
            rows["survey_ok"] = PoolFilter(survey=pool_filter.survey).mask(rows)
            labelled_parts.append(rows)
        hashed = None
        if labelled_objects is not None and surveyed.any():
            hashed = np.zeros(len(df), dtype="uint64")
            hashed[surveyed] = pd.util.hash_array(batch_object_ids(store, key, df[surveyed]))
        seen.append((key, candids, queueable, surveyed, hashed))
    latest = ~pd.Series(np.concatenate([c for _, c, *_ in seen]) if seen else np.empty(0, "int64")
                        ).duplicated(keep="last").to_numpy()  # keys sort by night and poll time
    labelled_rows = (pd.concat(labelled_parts, ignore_index=True).drop_duplicates("candid", keep="last")
                     if labelled_parts else empty_pool(spec).assign(objectId=pd.Series(dtype=object), survey_ok=False))
    excluded = None
    if labelled_objects is not None:
        objects = (set(labelled_objects) | set(labelled_rows["objectId"])) - {""}
        excluded = pd.util.hash_array(np.array(sorted(objects), dtype=object)) if objects else np.empty(0, "uint64")
    masks, of_objects, start = [], [], 0
    for key, candids, queueable, surveyed, hashed in seen:
        is_latest = latest[start:start + len(candids)]
        start += len(candids)
        keep = is_latest & queueable
        if hashed is not None:
            objects_labelled = np.isin(hashed, excluded)
            keep &= ~objects_labelled
            if (lend := is_latest & surveyed & objects_labelled).any():
                rows = _rows(_Batch.read(store, spec, key), spec, lend)
                of_objects.append(rows.assign(objectId=batch_object_ids(store, key, rows)))
        if keep.any():
            masks.append((key, keep))

    def frames():
        for key, keep in masks:
            rows = _rows(_Batch.read(store, spec, key), spec, keep)
            rows["objectId"] = batch_object_ids(store, key, rows)
            rows["alerts_key"] = str(keys.parse_batch(key, "features").sibling("alerts"))
            yield rows

    size = int(sum(int(keep.sum()) for _, keep in masks))
    of_objects_rows = (pd.concat(of_objects, ignore_index=True) if of_objects else
                       empty_pool(spec).assign(objectId=pd.Series(dtype=object)))
    return RoundPool(Pool(frames, size, list(spec.columns)), labelled_rows.reset_index(drop=True), of_objects_rows)


def _rows(batch: _Batch | None, spec: FeatureSpec, keep: np.ndarray) -> pd.DataFrame:
    """The rows ``keep`` marks of a batch read again: candid, the feature columns, objectId when present and
    ``features_key``."""
    if batch is None:
        raise errors.FailedPrecondition("a features batch changed while the round read it (another feature set)")
    table = batch.columns(["candid", *spec.columns, *batch.optional("objectId")])
    rows = (table if keep.all() else table.filter(pa.array(keep))).to_pandas()
    rows["features_key"] = batch.key
    return rows


def _in_order(items: list, read, threads: int):
    """(item, read(item)) in order, reading up to ``threads`` ahead: never more than that many results held."""
    with ThreadPoolExecutor(max_workers=max(1, threads)) as executor:
        for i in range(0, len(items), threads):
            window = items[i:i + threads]
            yield from zip(window, executor.map(read, window))


def labelled_rows(indexed_pool: pd.DataFrame, ids: list[int], targets: dict[int, int], cols: list[str]) -> pd.DataFrame:
    """The feature rows of ``ids`` that the pool holds, with their ``target``, indexed by candid."""
    present = [c for c in ids if c in indexed_pool.index]
    df = indexed_pool.loc[present, cols].copy()
    df["target"] = np.array([targets[c] for c in present], dtype=int)
    df.index.name = "candid"
    return df


def answered_by_object(labelled: pd.DataFrame, unlabelled: pd.DataFrame, train_ids: list[int], hold_ids: list[int],
                       labels: dict[int, tuple[str, int | None]]) -> dict[int, tuple[str, int]]:
    """candid -> (label, target) of unlabelled alerts whose object's class is already known (object-level tags).

    An object whose labelled training alerts agree lends their label to its other alerts: one answer about a
    star counts for every alert of it. Nothing is lent from an object with a held-out alert (its other alerts
    would leak the held-out answer into training) or with conflicting labels. Both frames carry ``candid`` and
    ``objectId`` ('' when unknown).
    """
    side = {**{c: "train" for c in train_ids}, **{c: "holdout" for c in hold_ids}}
    known: dict[str, set[tuple[str, int]]] = {}
    held_objects = set()
    for candid, obj in zip(labelled["candid"].astype("int64"), labelled["objectId"]):
        where = side.get(int(candid))
        if not obj or where is None:
            continue
        if where == "holdout":
            held_objects.add(obj)
        else:
            known.setdefault(obj, set()).add(labels[int(candid)])
    lent = {obj: min(answers) for obj, answers in known.items()
            if len({t for _, t in answers}) == 1 and obj not in held_objects}
    return {int(c): lent[obj] for c, obj in zip(unlabelled["candid"], unlabelled["objectId"]) if obj in lent}
