"""Active-learning rounds: labels → training set → fit → evaluate → log/register → score pool → rank → queue.

A round's files live under ``rounds/<experiment>/round=NNN/``: ``training_ids.parquet`` and
``holdout_ids.parquet`` (which labelled candids were trained on / held out, with their target and the round
they joined), ``queue.parquet`` (the ranked alerts to label next) and ``meta.json``, written last with
put-if-absent: a round exists once its meta.json does, and two concurrent runs cannot both create round N.

Idempotence: a round records a digest of the current labels (the latest event of every candid); a run whose
digest equals the last round's returns that round instead of making another (``force`` overrides).

A round may train on a collected dataset (``dataset_id``, see :mod:`skysift.trainer.datasets`) instead of the
label events: its samples' candids and targets are the labelled set, the rest of the round is the same. Its
digest then covers the dataset id too, and the pool still excludes every labelled candid.

The pool is every ``features/`` batch in the store with the current feature-set version, deduplicated by
candid (the latest batch wins), minus every candid that has a label (``skip`` included). Memory is linear
in the pool: one float64 per feature and row (~22 columns: ~180 B a row, ~18 MB per 100k alerts).
Measured on 2 shared cores (real feature rows resampled, local store, 120 training labels, uncertainty):
a 100k pool takes ~5 s excluding MLflow (read 0.8 s, fit + score + rank 1.2 s; committee: fit + score 5.5 s),
a 1M pool ~11 s (read 2.4 s, fit + score + rank 6.1 s) in ~1 GB RSS. ``RoundResult.timings`` has each phase;
``mlflow`` (logging, permutation importance, registration, champion check) is usually the largest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa

from skysift import errors
from skysift.alerts.batches import object_ids as alerts_object_ids
from skysift.features.core import feature_batches, feature_set_version
from skysift.modeltags import ModelTag, get_tag
from skysift.store import keys
from skysift.trainer import evaluation, strategies
from skysift.trainer.labels import LabelEvent, LabelStore
from skysift.trainer.settings import TrainerSettings

log = logging.getLogger(__name__)

EXPERIMENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # fullmatch: "$" would let a final newline in
DEFAULT_PARAMS = {"learning_rate": 0.1, "max_iter": 100, "l2_regularization": 10.0, "min_samples_leaf": 5,
                  "max_leaf_nodes": 31, "class_weight": None}
# min_samples_leaf=5 rather than scikit-learn's 20: with the 30-label first batch, 20 allows one split at most.
PARAM_TYPES = {"learning_rate": float, "max_iter": int, "l2_regularization": float, "min_samples_leaf": int,
               "max_leaf_nodes": int, "class_weight": str}
PARAM_LIMITS = {"max_iter": 5000, "learning_rate": 10.0, "max_leaf_nodes": 4096, "min_samples_leaf": 100_000}
PARAM_ALIASES = {"l2": "l2_regularization", "iterations": "max_iter", "lr": "learning_rate"}


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


def model_params(params: dict | None) -> dict:
    """Hyper-parameters with defaults; accepts strings (from gRPC/CLI) and rejects unknown names."""
    out = dict(DEFAULT_PARAMS)
    for raw_name, value in (params or {}).items():
        name = PARAM_ALIASES.get(raw_name, raw_name)
        if name not in PARAM_TYPES:
            raise errors.InvalidArgument(f"unknown model parameter {raw_name!r}; expected one of {', '.join(PARAM_TYPES)}")
        if name == "class_weight":
            text = "none" if value is None else str(value).strip().lower()
            if text not in ("none", "", "balanced"):
                raise errors.InvalidArgument(f"class_weight must be 'balanced' or 'none', got {value!r}")
            out[name] = "balanced" if text == "balanced" else None
            continue
        try:
            out[name] = PARAM_TYPES[name](value)
        except (TypeError, ValueError):
            raise errors.InvalidArgument(f"model parameter {name}={value!r} is not a {PARAM_TYPES[name].__name__}") from None
        if not math.isfinite(out[name]):
            raise errors.InvalidArgument(f"model parameter {name} must be a finite number, got {value!r}")
        if out[name] < 0 or (out[name] == 0 and name != "l2_regularization"):
            raise errors.InvalidArgument(f"model parameter {name} must be positive, got {value!r}")
        if name == "max_leaf_nodes" and out[name] < 2:
            raise errors.InvalidArgument(f"model parameter max_leaf_nodes must be at least 2, got {value!r}")
        if name in PARAM_LIMITS and out[name] > PARAM_LIMITS[name]:  # a round holds the trainer's lock while it fits
            raise errors.InvalidArgument(f"model parameter {name} must be at most {PARAM_LIMITS[name]}, got {value!r}")
    return out


def fit(X: pd.DataFrame, y: np.ndarray, params: dict, seed: int):
    """Fit the default model (HistGradientBoosting; NaN features are handled natively).

    A column that is NaN on every training row (e.g. ``ebv`` before enrichment ran) makes scikit-learn's
    binning fail; it is fitted as a constant 0 instead: a constant column gets no split, so the model ignores
    it and later values in it change nothing.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    empty = X.columns[X.isna().all(axis=0)]
    if len(empty):
        X = X.assign(**{c: 0.0 for c in empty})
    model = HistGradientBoostingClassifier(random_state=seed, early_stopping=False, **params)
    return model.fit(X, np.asarray(y, dtype=int))


def fit_committee(X: pd.DataFrame, y: np.ndarray, params: dict, seed: int, size: int) -> list:
    """A bagged ensemble for query by committee: each member sees a bootstrap drawn within each class,
    so that every member has both classes even when one of them has only a few labels."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y, dtype=int)
    by_class = [np.flatnonzero(y == c) for c in (0, 1)]
    members = []
    for i in range(size):
        idx = np.concatenate([rng.choice(ix, size=len(ix), replace=True) for ix in by_class])
        members.append(fit(X.iloc[idx], y[idx], params, seed + 1 + i))
    return members


@dataclass
class Fitted:
    model: object
    ranked: strategies.Ranked
    pool_proba: np.ndarray


def fit_and_query(X_train: pd.DataFrame, y_train, X_pool: pd.DataFrame, strategy: str, n: int, params: dict,
                  seed: int, rng: np.random.Generator, committee_size: int, positive_class: str) -> Fitted:
    """Fit on the training set, score the pool and rank it: the shared core of rounds and experiments."""
    model = fit(X_train, y_train, params, seed)
    proba = model.predict_proba(X_pool) if len(X_pool) else np.empty((0, 2))
    members = None
    if strategy == "committee" and len(X_pool):
        members = np.stack([m.predict_proba(X_pool) for m in fit_committee(X_train, y_train, params, seed, committee_size)])
    ranked = strategies.query(strategy, n, rng, proba=proba, member_proba=members, positive_class=positive_class)
    return Fitted(model, ranked, proba)


def limited_threads(n: int):
    """Cap scikit-learn's OpenMP threads (see ``TrainerSettings.threads``).

    threadpoolctl only limits libraries already loaded, and scikit-learn loads its OpenMP runtime with the
    estimator modules, so import them first: without that the cap silently did nothing (4.4 s vs 0.06 s a fit).
    """
    import sklearn.ensemble  # noqa: F401 - loads the OpenMP runtime so that the limit applies to it
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n)


def can_fit(y) -> bool:
    y = np.asarray(y)
    return len(y) > 0 and len(np.unique(y)) == 2


def check_experiment(name: str) -> str:
    if not EXPERIMENT_RE.fullmatch(name or ""):
        raise errors.InvalidArgument(
            f"invalid experiment name {name!r}: 1-64 letters, digits, '_', '.', '-', starting with a letter or digit")
    return name


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
        return _empty_pool(spec)
    with ThreadPoolExecutor(max_workers=min(threads, len(batch_keys))) as pool:
        tables = [t for t in pool.map(read, batch_keys) if t is not None]
    if not tables:
        return _empty_pool(spec)
    table = pa.concat_tables(tables, promote_options="default")
    df = table.to_pandas()
    # keys sort by night and poll time: keep each candid's last occurrence
    df = df.drop_duplicates("candid", keep="last").reset_index(drop=True)
    df["candid"] = df["candid"].astype("int64")
    return df


def _empty_pool(spec: FeatureSpec) -> pd.DataFrame:
    """No rows, with the dtypes of a read pool: an untyped empty frame cannot be merged on candid."""
    return pd.DataFrame({"candid": pd.Series(dtype="int64"), **{c: pd.Series(dtype="float64") for c in spec.columns},
                         "features_key": pd.Series(dtype="object")})


def object_ids(store, pool_rows: pd.DataFrame) -> dict[int, tuple[str, str]]:
    """candid -> (objectId, alerts key) for a few rows, reading only the alerts batches they came from."""
    out: dict[int, tuple[str, str]] = {}
    for fkey, rows in pool_rows.groupby("features_key"):
        akey = str(keys.parse_batch(fkey, "features").sibling("alerts"))
        wanted = set(rows["candid"].astype("int64"))
        found: dict[int, str] = {}
        if "objectId" in rows and rows["objectId"].notna().all():
            found = dict(zip(rows["candid"].astype("int64"), rows["objectId"].astype(str)))
        else:
            candids = sorted(wanted)
            ids = alerts_object_ids(store, keys.parse_batch(fkey, "features"), pa.array(candids, pa.int64()))
            found = dict(zip(candids, ids.to_pylist()))
        for c in wanted:
            out[c] = (found.get(c) or "", akey)
    return out


def labels_digest(latest: dict[int, LabelEvent]) -> str:
    h = hashlib.sha256()
    for candid in sorted(latest):
        h.update(f"{candid}:{latest[candid].event_id};".encode())
    return h.hexdigest()


QUEUE_COLUMNS = ["candid", "objectId", "rank", "score", "probability", "strategy", "reason", "alerts_key"]
IDS_SCHEMA = pa.schema([("candid", pa.int64()), ("target", pa.int8()), ("label", pa.string()), ("round_added", pa.int32())])


@dataclass
class RoundResult:
    experiment: str
    round: int
    created: bool
    model_tag: str
    strategy: str
    mlflow_run_id: str = ""
    model_version: str = ""
    champion_moved: bool = False
    metrics: dict = field(default_factory=dict)
    queue_size: int = 0
    queue_key: str = ""
    message: str = ""
    n_train: int = 0
    n_holdout: int = 0
    n_pool: int = 0
    quality_issues: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)


@dataclass
class QueueItem:
    candid: int
    object_id: str
    rank: int
    score: float
    probability: float
    strategy: str
    reason: str
    alerts_key: str
    label: str = ""  # the current label when it has been labelled since the queue was written


@dataclass
class QueueResult:
    experiment: str
    round: int
    items: list[QueueItem]


class _Timer:
    def __init__(self):
        self.t = time.perf_counter()
        self.phases: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = round(now - self.t, 4)
        self.t = now


class Trainer:
    """Runs rounds and serves queues; one instance per process, rounds serialised by a lock."""

    def __init__(self, settings, store, trainer_settings: TrainerSettings | None = None,
                 feature_spec: FeatureSpec | None = None):
        from skysift import config

        self.settings = settings
        self.store = store
        self.ts = trainer_settings or config.load(TrainerSettings)
        self._spec = feature_spec
        self.labels = LabelStore(store)
        self._lock = threading.Lock()

    @property
    def spec(self) -> FeatureSpec:
        if self._spec is None:
            self._spec = FeatureSpec.current()
        return self._spec

    # -- reading rounds ---------------------------------------------------------------------------
    def rounds(self, experiment: str) -> list[int]:
        check_experiment(experiment)
        found = []
        for key in self.store.list_keys(f"rounds/{experiment}/"):
            m = re.match(rf"^rounds/{re.escape(experiment)}/round=(\d+)/meta\.json$", key)
            if m:
                found.append(int(m.group(1)))
        return sorted(found)

    def meta(self, experiment: str, round_number: int | None = None) -> dict:
        numbers = self.rounds(experiment)
        if not numbers:
            raise errors.NotFound(f"experiment {experiment!r} has no round yet; run `skysift round --experiment {experiment}`")
        number = numbers[-1] if round_number is None else round_number
        if number not in numbers:
            raise errors.NotFound(f"experiment {experiment!r} has no round {number}; rounds: {numbers}")
        return json.loads(self.store.get_bytes(keys.round_prefix(experiment, number) + "meta.json"))

    def _ids(self, experiment: str, number: int, name: str) -> pd.DataFrame:
        key = keys.round_prefix(experiment, number) + name
        return self.store.read_table(key).to_pandas() if self.store.exists(key) else IDS_SCHEMA.empty_table().to_pandas()

    def get_queue(self, experiment: str, round: int | None = None) -> QueueResult:
        meta = self.meta(experiment, round)
        table = self.store.read_table(meta["queue_key"]).to_pandas().sort_values("rank")
        latest = self.labels.latest(candids=table["candid"].tolist())
        items = [QueueItem(int(r.candid), r.objectId, int(r.rank), float(r.score), float(r.probability), r.strategy,
                           r.reason, r.alerts_key, latest[r.candid].label if r.candid in latest else "")
                 for r in table.itertuples(index=False)]
        return QueueResult(experiment, meta["round"], items)

    # -- running a round --------------------------------------------------------------------------
    def run_round(self, experiment: str, model_tag: str, strategy: str = "uncertainty", batch_size=10,
                  initial_batch_size=30, seed=0, params: dict | None = None, force=False,
                  dataset_id: str | None = None) -> RoundResult:
        check_experiment(experiment)
        tag = get_tag(model_tag)
        strategy = strategies.check_strategy(strategy)
        params = model_params(params)
        if batch_size < 1 or initial_batch_size < 1:
            raise errors.InvalidArgument("batch sizes must be at least 1")
        if seed < 0:
            raise errors.InvalidArgument(f"seed must not be negative, got {seed}")
        with self._lock, limited_threads(self.ts.threads):
            return self._run_round(experiment, tag, strategy, int(batch_size), int(initial_batch_size), int(seed),
                                   params, force, dataset_id)

    def _split(self, usable: dict[int, int], prev_train: pd.DataFrame, prev_hold: pd.DataFrame, split_seed: int
               ) -> tuple[list[int], list[int]]:
        """Training and held-out candids for this round (see :mod:`skysift.trainer.evaluation`)."""
        if self.ts.validation_key:
            validation = set(_read_candids(self.store, self.ts.validation_key))
            hold = sorted(c for c in usable if c in validation)
            return sorted(c for c in usable if c not in validation), hold
        kept_train = [int(c) for c in prev_train["candid"] if int(c) in usable]
        kept_hold = [int(c) for c in prev_hold["candid"] if int(c) in usable]
        seen = set(kept_train) | set(kept_hold)
        new = {c: t for c, t in usable.items() if c not in seen}
        held = evaluation.assign_holdout(new, Counter(usable[c] for c in kept_hold), Counter(usable.values()),
                                         self.ts.holdout_fraction, split_seed)
        return kept_train + sorted(c for c in new if c not in held), kept_hold + sorted(held)

    def _run_round(self, experiment, tag: ModelTag, strategy, batch_size, initial_batch_size, seed, params, force,
                   dataset_id):
        timer = _Timer()
        numbers = self.rounds(experiment)
        prev = self.meta(experiment) if numbers else None
        if prev and prev["model_tag"] != tag.name:
            raise errors.InvalidArgument(f"experiment {experiment!r} trains model tag {prev['model_tag']!r}, not {tag.name!r}")
        latest = self.labels.latest()
        digest = labels_digest(latest)
        if dataset_id:
            from skysift.trainer.datasets import training_labels

            labelled = training_labels(self.store, dataset_id, tag.name, force)
            digest = hashlib.sha256(f"dataset={dataset_id};{digest}".encode()).hexdigest()
        else:
            labelled = {c: (e.label, tag.target(e.label)) for c, e in latest.items()}
        if prev and not force and prev["labels_digest"] == digest:
            result = RoundResult(**{k: v for k, v in prev["result"].items() if k in RoundResult.__dataclass_fields__})
            result.created = False
            what = f"same dataset {dataset_id!r} and labels as" if dataset_id else "no new labels since"
            result.message = f"{what} round {prev['round']}: returning it (use force to run anyway)"
            return result
        number = prev["round"] + 1 if prev else 0
        split_seed = prev["split_seed"] if prev else seed
        usable = {c: t for c, (_, t) in labelled.items() if t is not None}
        prev_train = self._ids(experiment, prev["round"], "training_ids.parquet") if prev else IDS_SCHEMA.empty_table().to_pandas()
        prev_hold = self._ids(experiment, prev["round"], "holdout_ids.parquet") if prev else IDS_SCHEMA.empty_table().to_pandas()
        train_ids, hold_ids = self._split(usable, prev_train, prev_hold, split_seed)
        timer.lap("labels")

        pool = load_pool(self.store, self.spec, self.ts.pool_read_threads)
        timer.lap("load_pool")
        cols = list(self.spec.columns)
        indexed = pool.set_index("candid")
        train_df = _labelled_rows(indexed, train_ids, usable, cols)
        hold_df = _labelled_rows(indexed, hold_ids, usable, cols)
        missing = (len(train_ids) - len(train_df)) + (len(hold_ids) - len(hold_df))
        unlabelled = pool[~pool["candid"].isin(latest.keys() | labelled.keys())].reset_index(drop=True)
        conflicts = label_conflicts(self.labels.history(), tag)
        quality = evaluation.quality(train_df.reset_index(), cols, conflicts) if len(train_df) else None
        rng = np.random.default_rng([seed, number])

        metrics: dict[str, float] = {}
        model = None
        pool_proba = None
        if can_fit(train_df["target"]):
            used_strategy, size = strategy, batch_size
            fitted = fit_and_query(train_df[cols], train_df["target"].to_numpy(), unlabelled[cols], strategy, size,
                                   params, seed, rng, self.ts.committee_size, tag.positive_class)
            model, ranked, pool_proba = fitted.model, fitted.ranked, fitted.pool_proba
            timer.lap("fit_score_rank")
            metrics["train_accuracy"] = float((model.predict(train_df[cols]) == train_df["target"].to_numpy()).mean())
            if len(hold_df):
                held = evaluation.metrics(hold_df["target"].to_numpy(), model.predict_proba(hold_df[cols])[:, 1])
                metrics.update({f"holdout_{k}": v for k, v in held.items()})
            timer.lap("evaluate")
            message = f"trained on {len(train_df)} labels, held out {len(hold_df)}"
        else:
            used_strategy, size = "random", initial_batch_size
            ranked = strategies.query("random", size, rng, proba=np.empty((len(unlabelled), 2)))
            message = ("initial random batch: no labels yet" if not len(train_df) else
                       f"random batch: the {len(train_df)} training labels hold only one class, no model can be fitted")
            timer.lap("fit_score_rank")
        if missing:
            message += f"; {missing} labelled candids have no stored features and were left out"
        if not len(unlabelled):
            message += "; the pool is empty: no unlabelled alerts with features in the store"

        queued = unlabelled.iloc[ranked.index]
        where = object_ids(self.store, queued)
        queue = pd.DataFrame({
            "candid": queued["candid"].to_numpy(dtype="int64"),
            "objectId": [where[int(c)][0] for c in queued["candid"]],
            "rank": np.arange(1, len(queued) + 1, dtype="int32"),
            "score": ranked.score.astype("float64"),
            "probability": pool_proba[ranked.index, 1] if pool_proba is not None else np.full(len(queued), np.nan),
            "strategy": used_strategy,
            "reason": ranked.reason if model is not None else ["initial random batch (no model yet)"] * len(queued),
            "alerts_key": [where[int(c)][1] for c in queued["candid"]],
        })
        prefix = keys.round_prefix(experiment, number)
        train_tab = _ids_table(train_ids, usable, labelled, prev_train, number)
        hold_tab = _ids_table(hold_ids, usable, labelled, prev_hold, number)
        result = RoundResult(
            experiment=experiment, round=number, created=True, model_tag=tag.name, strategy=used_strategy,
            metrics=metrics, queue_size=len(queue), queue_key=prefix + "queue.parquet", message=message,
            n_train=len(train_df), n_holdout=len(hold_df), n_pool=len(unlabelled),
            quality_issues=quality.issues if quality else [],
        )
        timer.lap("queue")

        from skysift.trainer import tracking

        tracked = tracking.log_round(
            tracking.RoundLog(
                tracking_uri=self.settings.mlflow_tracking_uri, settings=self.ts, tag=tag,
                model_name=tag.registered_name(self.settings.mlflow_model_prefix), experiment=experiment,
                round=number, strategy=used_strategy, seed=seed, batch_size=batch_size,
                initial_batch_size=initial_batch_size, params=params, spec=self.spec, model=model,
                X_train=train_df[cols], y_train=train_df["target"].to_numpy(), X_holdout=hold_df[cols],
                y_holdout=hold_df["target"].to_numpy(), metrics=metrics, quality=quality, queue=queue,
                training_ids=train_tab.to_pandas(), holdout_ids=hold_tab.to_pandas(), message=message,
                dataset_id=dataset_id or "",
            )
        )
        timer.lap("mlflow")
        result.mlflow_run_id, result.model_version = tracked.run_id, tracked.model_version
        result.champion_moved = tracked.champion_moved
        result.metrics.update(tracked.metrics)
        if tracked.message:
            result.message += "; " + tracked.message

        self.store.write_table(prefix + "queue.parquet", pa.Table.from_pandas(queue[QUEUE_COLUMNS], preserve_index=False))
        self.store.write_table(prefix + "training_ids.parquet", train_tab)
        self.store.write_table(prefix + "holdout_ids.parquet", hold_tab)
        timer.lap("write")
        result.timings = timer.phases
        meta = {
            "experiment": experiment, "round": number, "model_tag": tag.name, "labels_digest": digest,
            "split_seed": split_seed, "created_at": datetime.now(UTC).isoformat(), "params": params,
            "seed": seed, "batch_size": batch_size, "initial_batch_size": initial_batch_size,
            "feature_set_version": self.spec.version, "feature_columns": cols, "queue_key": result.queue_key,
            "requested_strategy": strategy, "dataset_id": dataset_id or "", "result": asdict(result),
        }
        if not self.store.put_if_absent(prefix + "meta.json", json.dumps(meta, indent=2).encode()):
            raise errors.FailedPrecondition(f"round {number} of {experiment!r} was created by another run meanwhile")
        log.info("round done", extra={"experiment": experiment, "round": number, "timings": timer.phases})
        return result


def _labelled_rows(indexed_pool: pd.DataFrame, ids: list[int], usable: dict[int, int], cols: list[str]) -> pd.DataFrame:
    present = [c for c in ids if c in indexed_pool.index]
    df = indexed_pool.loc[present, cols].copy()
    df["target"] = np.array([usable[c] for c in present], dtype=int)
    df.index.name = "candid"
    return df


def _ids_table(ids: list[int], usable: dict[int, int], labelled: dict[int, tuple[str, int | None]], prev: pd.DataFrame,
               number: int) -> pa.Table:
    added = dict(zip(prev["candid"].astype("int64"), prev["round_added"].astype("int32")))
    return pa.table({
        "candid": pa.array(ids, pa.int64()),
        "target": pa.array([usable[c] for c in ids], pa.int8()),
        "label": pa.array([labelled[c][0] for c in ids], pa.string()),
        "round_added": pa.array([int(added.get(c, number)) for c in ids], pa.int32()),
    }, schema=IDS_SCHEMA)


def label_conflicts(history: list[LabelEvent], tag: ModelTag) -> set[int]:
    """Candids whose labellers' latest labels map to different targets under ``tag``."""
    per_user: dict[tuple[int, str], int | None] = {}
    for e in history:
        per_user[(e.candid, e.user)] = tag.target(e.label)
    seen: dict[int, set] = {}
    for (candid, _), target in per_user.items():
        if target is not None:
            seen.setdefault(candid, set()).add(target)
    return {c for c, t in seen.items() if len(t) > 1}


def _read_candids(store, key: str) -> list[int]:
    import io

    data = store.get_bytes(key)
    if key.endswith(".csv"):
        frame = pd.read_csv(io.BytesIO(data), usecols=["candid"])
    else:
        frame = store.read_table(key, columns=["candid"]).to_pandas()
    return frame["candid"].astype("int64").tolist()
