"""An active-learning round, as its phases: labels → split → pool → fit and query → evaluate → queue → track → write.

What a round stores is described in :mod:`.records`, the pool in :mod:`.pool`, the model in :mod:`.model`,
the query strategies in :mod:`.strategies`, the held-out split, metrics and champion rule in :mod:`.evaluation`.

Idempotence: a round records a digest of the current labels (the latest event of every candid); a run whose
digest equals the last round's returns that round instead of making another (``force`` overrides).

A round may train on a collected dataset (``dataset_id``, see :mod:`skysift.trainer.datasets`) instead of the
label events: its samples' candids and targets are the labelled set, the rest of the round is the same. Its
digest then covers the dataset id too, and the pool still excludes every labelled candid.

The queue holds at most one alert per object. For a model tag whose classes belong to the object (galactic:
``ModelTag.object_level``) an object with a labelled alert is not queued again and its other alerts train with
that label (:func:`.pool.answered_by_object`); for real/bogus each alert is its own question. ``SKYSIFT_TRAINER_POOL_*`` (or a round's own ``pool_*`` arguments) restrict what may be queued (survey, band, minimum detections);
the survey restriction applies to the training labels too, so a model tag can be trained per survey.

Measured on 2 shared cores (real feature rows resampled, local store, 120 training labels, uncertainty):
a 100k pool takes ~5 s excluding MLflow (read 0.8 s, fit + score + rank 1.2 s; committee: fit + score 5.5 s),
a 1M pool ~11 s (read 2.4 s, fit + score + rank 6.1 s). The pool is streamed (:func:`.pool.round_pool`,
:mod:`.streamed`): ~46 bytes of RSS per pool row (a 10M pool: 37 s of CPU, 2.3 GB peak in ``skysift bench``,
see bench/README.md). ``RoundResult.timings`` has each phase;
``mlflow`` (logging, permutation importance, registration, champion check) is usually the largest.

Over ~350 lines because the :class:`Trainer` holds every phase of a round as a small method in the order they run,
so the round reads top to bottom in one file; each phase's substance lives in the modules named above.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from skysift import errors
from skysift.modeltags import ModelTag, get_tag
from skysift.store import keys
from skysift.trainer import evaluation, strategies, tracking
from skysift.trainer.datasets import training_labels
from skysift.trainer.labels import LabelStore, label_conflicts, label_targets, labels_digest, latest_of
from skysift.trainer.model import can_fit, cold_start_strategy, fit_scorer, limited_threads, model_params
from skysift.trainer.pool import FeatureSpec, PoolFilter, answered_by_object, labelled_rows, round_pool
from skysift.trainer.records import (
    QueueItem,
    QueueResult,
    RoundRecords,
    RoundResult,
    empty_ids,
    ids_table,
    read_candids,
)
from skysift.trainer.settings import TrainerSettings
from skysift.trainer.streamed import Pool, Scorer, streamed_query
from skysift.validation import check_band, check_count, check_experiment, check_survey

log = logging.getLogger(__name__)
# run_round's pool-filter keywords, RunRound's optional fields of the same names (None / unset: the settings')
POOL_FIELDS = ("pool_survey", "pool_band", "pool_min_detections")


@dataclass(frozen=True)
class RoundRequest:
    experiment: str
    tag: ModelTag
    strategy: str
    batch_size: int
    initial_batch_size: int
    seed: int
    params: dict
    force: bool
    dataset_id: str | None
    pool_filter: PoolFilter


@dataclass
class Labelled:
    """candid -> (label, target or None) of what the round learns from, and the digest that identifies it."""

    labels: dict[int, tuple[str, int | None]]
    digest: str
    any_label: set[int]  # every candid with a label event (skip included): never queued again
    objects: set[str]  # the objects the label events name
    events: pa.Table  # every label event, in key order: read once a round, for the labels and their conflicts

    @property
    def targets(self) -> dict[int, int]:
        return {c: t for c, (_, t) in self.labels.items() if t is not None}


@dataclass
class Sets:
    """The round's training rows, held-out rows and the unlabelled pool it may queue from (streamed)."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    unlabelled: Pool
    missing: int  # labelled candids without stored features
    answered: dict[int, tuple[str, int]]  # candid -> (label, target) inherited from its object's labelled alerts


@dataclass
class Query:
    model: object
    ranked: strategies.Ranked
    strategy: str
    proba: np.ndarray | None  # the queue candidates' (rows of ``candidates``, which ``ranked.index`` points into)
    threshold: float
    message: str
    candidates: pd.DataFrame


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
        self.records = RoundRecords(store)
        self._lock = threading.Lock()

    @property
    def spec(self) -> FeatureSpec:
        if self._spec is None:
            self._spec = FeatureSpec.current()
        return self._spec

    # -- reading rounds ---------------------------------------------------------------------------
    def rounds(self, experiment: str) -> list[int]:
        return self.records.numbers(experiment)

    def meta(self, experiment: str, round_number: int | None = None) -> dict:
        return self.records.meta(experiment, round_number)

    def get_queue(self, experiment: str, round: int | None = None) -> QueueResult:
        meta = self.records.meta(experiment, round)
        table = self.records.queue(meta)
        latest = self.labels.latest(candids=table["candid"].tolist())
        items = [QueueItem(int(r.candid), r.objectId, int(r.rank), float(r.score), float(r.probability), r.strategy,
                           r.reason, r.alerts_key, latest[r.candid].label if r.candid in latest else "")
                 for r in table.itertuples(index=False)]
        return QueueResult(experiment, meta["round"], items)

    # -- running a round --------------------------------------------------------------------------
    def run_round(self, experiment: str, model_tag: str, strategy: str = "default", batch_size=10,
                  initial_batch_size=30, seed=0, params: dict | None = None, force=False,
                  dataset_id: str | None = None, pool_survey: str | None = None, pool_band: str | None = None,
                  pool_min_detections: int | None = None) -> RoundResult:
        """One round; the ``pool_*`` arguments restrict what may be queued in this round (None: the settings')."""
        if batch_size < 1 or initial_batch_size < 1:
            raise errors.InvalidArgument("batch sizes must be at least 1")
        if seed < 0:
            raise errors.InvalidArgument(f"seed must not be negative, got {seed}")
        req = RoundRequest(check_experiment(experiment), get_tag(model_tag), strategies.check_strategy(strategy),
                           int(batch_size), int(initial_batch_size), int(seed), model_params(params), force,
                           dataset_id or None, self._pool_filter(pool_survey, pool_band, pool_min_detections))
        with self._lock, limited_threads(self.ts.threads):
            return self._run_round(req)

    def _pool_filter(self, survey: str | None, band: str | None, min_detections: int | None) -> PoolFilter:
        return PoolFilter(check_survey(self.ts.pool_survey if survey is None else survey),
                          check_band(self.ts.pool_band if band is None else band),
                          check_count(self.ts.pool_min_detections if min_detections is None else min_detections,
                                      "pool_min_detections"))

    def _run_round(self, req: RoundRequest) -> RoundResult:
        timer = _Timer()
        prev = self.records.latest(req.experiment)
        if prev and prev["model_tag"] != req.tag.name:
            raise errors.InvalidArgument(f"experiment {req.experiment!r} trains model tag {prev['model_tag']!r}, "
                                         f"not {req.tag.name!r}")
        labelled = self._labelled(req)
        if prev and not req.force and prev["labels_digest"] == labelled.digest:
            return self._unchanged(prev, req)
        number = prev["round"] + 1 if prev else 0
        split_seed = prev["split_seed"] if prev else req.seed
        previous_ids = {name: self.records.ids(req.experiment, prev["round"], name) if prev else empty_ids()
                        for name in ("training_ids.parquet", "holdout_ids.parquet")}
        train_ids, hold_ids = self._split(labelled.targets, *previous_ids.values(), split_seed)
        timer.lap("labels")

        sets = self._sets(train_ids, hold_ids, labelled, req.tag, req.pool_filter, lend=not req.dataset_id)
        timer.lap("load_pool")
        rng = np.random.default_rng([req.seed, number])
        query = self._query(sets, req, rng)
        timer.lap("fit_score_rank")
        metrics = self._evaluate(query, sets, req.tag)
        timer.lap("evaluate")
        queue = self._queue(query)
        training = ids_table(train_ids + sorted(sets.answered), {**labelled.labels, **sets.answered},
                             previous_ids["training_ids.parquet"], number)
        holdout = ids_table(hold_ids, labelled.labels, previous_ids["holdout_ids.parquet"], number)
        message = self._message(query, sets, req.pool_filter)
        quality = self._quality(sets.train, req.tag, labelled.events)
        result = RoundResult(
            experiment=req.experiment, round=number, created=True, model_tag=req.tag.name, strategy=query.strategy,
            metrics=metrics, queue_size=len(queue), queue_key=keys.round_prefix(req.experiment, number) + "queue.parquet",
            message=message, n_train=len(sets.train), n_holdout=len(sets.holdout), n_pool=len(sets.unlabelled),
            quality_issues=quality.issues if quality else [],
        )
        timer.lap("queue")

        self._track(result, req, query, sets, quality, queue, training, holdout)
        timer.lap("mlflow")
        result.timings = timer.phases
        meta = {
            "experiment": req.experiment, "round": number, "model_tag": req.tag.name, "labels_digest": labelled.digest,
            "split_seed": split_seed, "created_at": datetime.now(UTC).isoformat(), "params": req.params,
            "seed": req.seed, "batch_size": req.batch_size, "initial_batch_size": req.initial_batch_size,
            "feature_set_version": self.spec.version, "feature_columns": list(self.spec.columns),
            "queue_key": result.queue_key, "requested_strategy": req.strategy, "dataset_id": req.dataset_id or "",
            "decision_threshold": query.threshold, "pool_filter": asdict(req.pool_filter), "result": asdict(result),
        }
        self.records.write(req.experiment, number, queue, training, holdout, meta)
        timer.lap("write")
        log.info("round done", extra={"experiment": req.experiment, "round": number, "timings": timer.phases})
        return result

    # -- the phases -------------------------------------------------------------------------------
    def _labelled(self, req: RoundRequest) -> Labelled:
        """The label events' latest labels, or a collected dataset's samples, with their digest."""
        events = self.labels.table()
        latest = latest_of(events, columns=["candid", "label", "event_id", "object_id"])  # no object per event
        digest = labels_digest(latest)
        candids = latest.column("candid").to_pylist()
        if req.dataset_id:
            labels = training_labels(self.store, req.dataset_id, req.tag.name, req.force)
            digest = hashlib.sha256(f"dataset={req.dataset_id};{digest}".encode()).hexdigest()
        else:
            targets = label_targets(latest.column("label"), req.tag).to_pylist()
            labels = dict(zip(candids, zip(latest.column("label").to_pylist(), targets)))
        objects = set(pc.unique(latest.column("object_id")).to_pylist()) - {"", None}
        return Labelled(labels, digest, set(candids) | set(labels), objects, events)

    @staticmethod
    def _unchanged(prev: dict, req: RoundRequest) -> RoundResult:
        result = RoundResult.from_meta(prev)
        result.created = False
        what = f"same dataset {req.dataset_id!r} and labels as" if req.dataset_id else "no new labels since"
        result.message = f"{what} round {prev['round']}: returning it (use force to run anyway)"
        return result

    def _split(self, usable: dict[int, int], prev_train: pd.DataFrame, prev_hold: pd.DataFrame, split_seed: int
               ) -> tuple[list[int], list[int]]:
        """Training and held-out candids for this round (see :mod:`skysift.trainer.evaluation`)."""
        if self.ts.validation_key:
            validation = set(read_candids(self.store, self.ts.validation_key))
            hold = sorted(c for c in usable if c in validation)
            return sorted(c for c in usable if c not in validation), hold
        kept_train = [int(c) for c in prev_train["candid"] if int(c) in usable]
        kept_hold = [int(c) for c in prev_hold["candid"] if int(c) in usable]
        seen = set(kept_train) | set(kept_hold)
        new = {c: t for c, t in usable.items() if c not in seen}
        held = evaluation.assign_holdout(new, Counter(usable[c] for c in kept_hold), Counter(usable.values()),
                                         self.ts.holdout_fraction, split_seed)
        return kept_train + sorted(c for c in new if c not in held), kept_hold + sorted(held)

    def _sets(self, train_ids: list[int], hold_ids: list[int], labelled: Labelled, tag: ModelTag,
              pool_filter: PoolFilter, lend: bool) -> Sets:
        """Training and held-out feature rows, and the unlabelled pool (filtered, with object ids, streamed); with
        ``lend`` (not for a collected dataset, whose samples are the whole training set) an object's label trains
        its other alerts too."""
        cols = list(self.spec.columns)
        pool = round_pool(self.store, self.spec, pool_filter, labelled.any_label,
                          labelled.objects if tag.object_level else None, self.ts.pool_read_threads)
        answered: dict[int, tuple[str, int]] = {}
        if tag.object_level and lend:
            answered = answered_by_object(pool.labelled, pool.of_labelled_objects, train_ids, hold_ids,
                                          labelled.labels)
        indexed = pd.concat([pool.labelled[pool.labelled["survey_ok"]], pool.of_labelled_objects]).set_index("candid")
        targets = {**labelled.targets, **{c: t for c, (_, t) in answered.items()}}
        train = labelled_rows(indexed, train_ids + sorted(answered), targets, cols)
        holdout = labelled_rows(indexed, hold_ids, targets, cols)
        missing = (len(train_ids) - len(train) + len(answered)) + (len(hold_ids) - len(holdout))
        return Sets(train, holdout, pool.unlabelled, missing, answered)

    def _query(self, sets: Sets, req: RoundRequest, rng: np.random.Generator) -> Query:
        """Fit and rank the pool with the strategy, or, while no model can be fitted, pick a first batch."""
        cols = list(self.spec.columns)
        if can_fit(sets.train["target"], len(req.tag.classes)):
            scorer = fit_scorer(sets.train[cols], sets.train["target"].to_numpy(), req.strategy, req.params, req.seed,
                                self.ts.committee_size, req.tag.positive_class, self.ts.tune_threshold,
                                req.tag.classes)
            streamed = streamed_query(sets.unlabelled, req.strategy, req.batch_size, rng, scorer, sets.train,
                                      req.seed)
            return Query(scorer.model, streamed.ranked, req.strategy, streamed.proba, scorer.threshold,
                         f"trained on {len(sets.train)} labels, held out {len(sets.holdout)}", streamed.candidates)
        first = self.ts.initial_strategy
        cold_start_strategy(first)
        streamed = streamed_query(sets.unlabelled, first, req.initial_batch_size, rng, Scorer(), sets.train, req.seed)
        ranked = streamed.ranked
        ranked.reason = [f"initial batch (no model yet): {r}" for r in ranked.reason]
        missing = [c for i, c in enumerate(req.tag.classes) if i not in set(sets.train["target"])]
        message = (f"initial {first} batch: no labels yet" if not len(sets.train) else
                   f"{first} batch: the {len(sets.train)} training labels hold no {', '.join(missing)}, "
                   "no model can be fitted")
        return Query(None, ranked, first, None, 0.5, message, streamed.candidates)

    def _evaluate(self, query: Query, sets: Sets, tag: ModelTag) -> dict[str, float]:
        """Training accuracy and the held-out metrics, computed once (MLflow logs and compares these)."""
        if query.model is None:
            return {}
        cols = list(self.spec.columns)
        y_train = sets.train["target"].to_numpy()
        metrics = {"train_accuracy": float((query.model.predict(sets.train[cols]) == y_train).mean()),
                   "decision_threshold": query.threshold}
        if len(sets.holdout) and tag.multiclass:
            proba = query.model.predict_proba(sets.holdout[cols])
            metrics.update({f"holdout_{k}": v for k, v in
                            evaluation.multiclass_metrics(sets.holdout["target"].to_numpy(), proba, tag.classes).items()})
        elif len(sets.holdout):
            p = query.model.predict_proba(sets.holdout[cols])[:, 1]
            y = sets.holdout["target"].to_numpy()
            metrics.update({f"holdout_{k}": v for k, v in evaluation.metrics(y, p).items()})
            metrics["holdout_f1_at_threshold"] = evaluation.metrics(y, p, query.threshold)["f1"]
        return metrics

    @staticmethod
    def _queue(query: Query) -> pd.DataFrame:
        queued = query.candidates.iloc[query.ranked.index].reindex(columns=["candid", "objectId", "alerts_key"])
        n = len(queued)
        return pd.DataFrame({
            "candid": queued["candid"].to_numpy(dtype="int64"),
            "objectId": queued["objectId"].to_numpy(dtype=object),
            "rank": np.arange(1, n + 1, dtype="int32"),
            "score": np.asarray(query.ranked.score, dtype="float64"),
            # the positive class's probability; a multi-class model's most probable class's
            "probability": (query.proba[query.ranked.index].max(axis=1) if query.proba.shape[1] > 2 else
                            query.proba[query.ranked.index, 1]) if query.proba is not None else np.full(n, np.nan),
            "strategy": query.strategy,
            "reason": query.ranked.reason,
            "alerts_key": queued["alerts_key"].to_numpy(dtype=object),
        })

    def _message(self, query: Query, sets: Sets, pool_filter: PoolFilter) -> str:
        message = query.message
        if sets.missing:
            message += f"; {sets.missing} labelled candids have no stored features and were left out"
        if not len(sets.unlabelled):
            message += "; the pool is empty: no unlabelled alerts with features in the store"
            if pool_filter.describe():
                message += f" that pass the pool filter ({pool_filter.describe()})"
        return message

    def _quality(self, train: pd.DataFrame, tag: ModelTag, events: pa.Table):
        if not len(train):
            return None
        conflicts = label_conflicts(events, tag)
        return evaluation.quality(train.reset_index(), list(self.spec.columns), conflicts, classes=tag.classes)

    def _track(self, result: RoundResult, req: RoundRequest, query: Query, sets: Sets, quality, queue: pd.DataFrame,
               training, holdout) -> None:
        """Log the round to MLflow, register the model and apply the champion rule; fill ``result`` in."""
        cols = list(self.spec.columns)
        tracked = tracking.log_round(tracking.RoundLog(
            tracking_uri=self.settings.mlflow_tracking_uri, settings=self.ts, tag=req.tag,
            model_name=req.tag.registered_name(self.settings.mlflow_model_prefix), experiment=req.experiment,
            round=result.round, strategy=query.strategy, seed=req.seed, batch_size=req.batch_size,
            initial_batch_size=req.initial_batch_size, params=req.params, spec=self.spec, model=query.model,
            X_train=sets.train[cols], y_train=sets.train["target"].to_numpy(), X_holdout=sets.holdout[cols],
            y_holdout=sets.holdout["target"].to_numpy(), metrics=result.metrics, quality=quality, queue=queue,
            training_ids=training.to_pandas(), holdout_ids=holdout.to_pandas(), message=result.message,
            dataset_id=req.dataset_id or "",
        ))
        result.mlflow_run_id, result.model_version = tracked.run_id, tracked.model_version
        result.champion_moved = tracked.champion_moved
        result.metrics.update(tracked.metrics)
        if tracked.message:
            result.message += "; " + tracked.message
