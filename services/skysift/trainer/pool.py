"""The pool a round ranks: stored feature rows (one per candid), filtered, with their objects.

The pool is every ``features/`` batch in the store with the current feature-set version, deduplicated by
candid (the latest batch wins). Memory is linear in the pool: one float64 per feature and row (~22 columns:
~180 B a row, ~18 MB per 100k alerts).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from skysift import errors
from skysift.alerts import batches
from skysift.features.core import feature_batches, feature_set_version
from skysift.store import keys

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
        keep = np.ones(len(pool), dtype=bool)
        if self.survey:
            keep &= pool["features_key"].map(lambda k: keys.parse_batch(k).survey == self.survey).to_numpy(dtype=bool)
        if self.band:
            band_columns = [c for c in pool.columns if c.endswith(f"_{self.band}")]
            if not band_columns:
                raise errors.InvalidArgument(f"no feature column for band {self.band!r}")
            keep &= pool[band_columns].notna().any(axis=1).to_numpy()
        if self.min_detections:
            if "ndets" not in pool:
                raise errors.InvalidArgument("the feature set has no `ndets` column to filter detections on")
            keep &= (pool["ndets"].fillna(0) >= self.min_detections).to_numpy()
        return pool[keep].reset_index(drop=True)

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

    def read(key: str) -> pa.Table | None:
        table = store.read_table(key)
        version = feature_set_version(table.schema)
        if (version is not None and version != spec.version) or not set(spec.columns) <= set(table.column_names):
            log.warning("skipping features batch of another feature set", extra={"key": key})
            return None
        cols = ["candid", *spec.columns] + (["objectId"] if "objectId" in table.column_names else [])
        table = table.select(cols).replace_schema_metadata(None)
        return table.append_column("features_key", pa.array([key] * table.num_rows, pa.string()))

    if not batch_keys:
        return empty_pool(spec)
    with ThreadPoolExecutor(max_workers=min(threads, len(batch_keys))) as pool:
        tables = [t for t in pool.map(read, batch_keys) if t is not None]
    if not tables:
        return empty_pool(spec)
    table = pa.concat_tables(tables, promote_options="default")
    df = table.to_pandas()
    # keys sort by night and poll time: keep each candid's last occurrence
    df = df.drop_duplicates("candid", keep="last").reset_index(drop=True)
    df["candid"] = df["candid"].astype("int64")
    return df


def empty_pool(spec: FeatureSpec) -> pd.DataFrame:
    """No rows, with the dtypes of a read pool: an untyped empty frame cannot be merged on candid."""
    return pd.DataFrame({"candid": pd.Series(dtype="int64"), **{c: pd.Series(dtype="float64") for c in spec.columns},
                         "features_key": pd.Series(dtype="object")})


def object_ids(store, pool_rows: pd.DataFrame) -> dict[int, tuple[str, str]]:
    """candid -> (objectId, alerts key), reading only the alerts batches the rows came from ('' when unknown)."""
    out: dict[int, tuple[str, str]] = {}
    for fkey, rows in pool_rows.groupby("features_key"):
        batch = keys.parse_batch(fkey, "features")
        candids = rows["candid"].astype("int64").tolist()
        if "objectId" in rows and rows["objectId"].notna().all():
            found = rows["objectId"].astype(str).tolist()
        else:
            found = batches.object_ids(store, batch, pa.array(candids, pa.int64())).to_pylist()
        akey = str(batch.sibling("alerts"))
        out.update({c: (o or "", akey) for c, o in zip(candids, found)})
    return out


def with_object_ids(store, pool: pd.DataFrame) -> pd.DataFrame:
    """``pool`` with ``objectId`` and ``alerts_key`` columns ('' where the alerts batch is missing)."""
    where = object_ids(store, pool) if len(pool) else {}
    out = pool.copy()
    out["objectId"] = [where[int(c)][0] for c in pool["candid"]]
    out["alerts_key"] = [where[int(c)][1] for c in pool["candid"]]
    return out


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
