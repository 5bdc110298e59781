"""Training datasets (after AstrID's collector): alerts of a time window with labels, checked before use.

A dataset takes the alerts whose feature batches fall in ``[start, end]`` (by the poll time in the batch key),
labels them with the latest label event where one exists ("validated") and, to fill up to ``max_samples``, with
the champion's prediction where it is at least ``score_threshold`` confident (``prediction``: a pseudo-label).
With ``prefer_validated`` every validated sample goes in before any prediction; without it both kinds are
ranked by confidence (a label counts as 1.0). When there are more candidates than ``max_samples`` the choice
among equals is a seeded shuffle, so a dataset is reproducible.

It is stored as ``datasets/<id>/samples.parquet`` (candid, objectId, target, label, source, confidence,
features_key and the feature columns) and ``manifest.json`` (parameters, counts, class balance, the quality
report); its statistics are logged to MLflow as the run ``training_data_<id>``. The quality checks
(:func:`skysift.trainer.evaluation.quality`) never block collection: a failing dataset is stored with
``passed: false`` and its issues, so it is reported rather than silently used.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa

from skysift import errors, validation
from skysift.features.core import feature_batches
from skysift.modeltags import get_tag
from skysift.store import keys
from skysift.trainer import evaluation
from skysift.trainer.labels import LabelStore, label_conflicts, latest_events
from skysift.trainer.pool import FeatureSpec, load_pool


@dataclass
class DatasetRequest:
    name: str
    model_tag: str = "galactic"
    survey: str = ""  # empty: every survey
    start: datetime | None = None
    end: datetime | None = None
    score_threshold: float = 0.9
    prefer_validated: bool = True
    max_samples: int = 1000
    seed: int = 0


@dataclass
class Dataset:
    dataset_id: str
    name: str
    n_samples: int
    class_counts: dict
    quality_score: float
    quality_issues: list
    samples_key: str
    manifest: dict = field(default_factory=dict)


def _batch_time(key: str) -> datetime:
    return datetime.strptime(keys.parse_batch(key).stem[:15], "%Y%m%d_%H%M%S").replace(tzinfo=UTC)


def _in_window(key: str, req: DatasetRequest) -> bool:
    batch = keys.parse_batch(key)
    if req.survey and batch.survey != req.survey:
        return False
    when = _batch_time(key)
    return (req.start is None or when >= _utc(req.start)) and (req.end is None or when <= _utc(req.end))


def _utc(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _predictions(store, feature_keys: list[str], tag) -> pd.DataFrame:
    """candid → the predicted class (``target``) and its probability (``confidence``), from the predictions/
    batches beside the features (a binary model's is its positive class's probability p, or 1 - p)."""
    from skysift.inference.taxonomy import column_name

    columns = [column_name(c) for c in tag.classes]
    frames = []
    for fkey in feature_keys:
        pkey = str(keys.parse_batch(fkey).sibling("predictions"))
        if not store.exists(pkey):
            continue
        t = store.read_table(pkey).to_pandas()
        if "model_tag" in t:
            t = t[t["model_tag"] == tag.name]
        if set(columns) <= set(t.columns):
            proba = t[columns].to_numpy(dtype="float64")
            frames.append(pd.DataFrame({"candid": t["candid"].to_numpy(dtype="int64"), "target": proba.argmax(axis=1),
                                        "confidence": proba.max(axis=1)}))
    if not frames:
        return pd.DataFrame({"candid": pd.Series(dtype="int64"), "target": pd.Series(dtype="int64"),
                             "confidence": pd.Series(dtype="float64")})
    return pd.concat(frames).drop_duplicates("candid", keep="last")


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "dataset"


class Datasets:
    def __init__(self, settings, store, trainer_settings=None, feature_spec: FeatureSpec | None = None):
        from skysift import config
        from skysift.trainer.settings import TrainerSettings

        self.settings = settings
        self.store = store
        self.ts = trainer_settings or config.load(TrainerSettings)
        self._spec = feature_spec
        self.labels = LabelStore(store)

    @property
    def spec(self) -> FeatureSpec:
        if self._spec is None:
            self._spec = FeatureSpec.current()
        return self._spec

    def collect(self, req: DatasetRequest) -> Dataset:
        validation.check_dataset_name(req.name)
        validation.check_survey(req.survey)
        if req.max_samples < 1:
            raise errors.InvalidArgument(f"max_samples must be at least 1, got {req.max_samples}")
        if not 0.5 <= req.score_threshold <= 1.0:
            raise errors.InvalidArgument(f"score_threshold is a confidence in [0.5, 1], got {req.score_threshold}")
        if req.start and req.end and _utc(req.start) > _utc(req.end):
            raise errors.InvalidArgument("start is after end")
        tag = get_tag(req.model_tag)
        window = [k for k in feature_batches(self.store) if _in_window(k, req)]
        cols = list(self.spec.columns)
        pool = load_pool(self.store, self.spec, self.ts.pool_read_threads, batch_keys=window)
        events = self.labels.table()  # listed once, for the labels and their conflicts
        latest = latest_events(events, candids=pool["candid"].tolist())

        labelled = {c: (e.label, tag.target(e.label), e.source) for c, e in latest.items() if tag.target(e.label) is not None}
        candidates = pd.DataFrame({
            "candid": list(labelled), "label": [v[0] for v in labelled.values()],
            "target": [v[1] for v in labelled.values()], "source": [v[2] for v in labelled.values()],
            "confidence": 1.0, "validated": True,
        })
        preds = _predictions(self.store, window, tag)
        preds = preds[~preds["candid"].isin(latest.keys())]
        confident = preds[preds["confidence"] >= req.score_threshold]
        predicted = pd.DataFrame({
            "candid": confident["candid"].astype("int64"), "label": "", "target": confident["target"].astype(int),
            "source": "prediction", "confidence": confident["confidence"], "validated": False,
        })
        chosen = _choose(candidates, predicted, req)
        samples = chosen.merge(pool, on="candid", how="left")
        samples["label"] = [lbl or tag.classes[int(t)] for lbl, t in zip(samples["label"], samples["target"])]
        conflicts = label_conflicts(events, tag)
        report = evaluation.quality(samples, cols, conflicts, classes=tag.classes)

        dataset_id = f"{_slug(req.name)}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
        prefix = keys.dataset_prefix(dataset_id)
        out = samples[["candid", *([c for c in ("objectId",) if c in samples]), "target", "label", "source",
                       "confidence", "features_key", *cols]]
        self.store.write_table(prefix + "samples.parquet", pa.Table.from_pandas(out, preserve_index=False))
        class_counts = {c: int((samples["target"] == i).sum()) for i, c in enumerate(tag.classes)}
        manifest = {
            "dataset_id": dataset_id, "name": req.name, "created_at": datetime.now(UTC).isoformat(),
            "params": {**asdict(req), "start": req.start.isoformat() if req.start else None,
                       "end": req.end.isoformat() if req.end else None},
            "n_samples": len(samples), "n_validated": int(samples["validated"].sum()) if len(samples) else 0,
            "n_predicted": int((~samples["validated"]).sum()) if len(samples) else 0,
            "n_batches": len(window), "n_alerts_in_window": len(pool), "class_counts": class_counts,
            "quality_score": report.score, "quality_issues": report.issues, "quality_stats": report.stats,
            "passed": report.ok, "feature_set_version": self.spec.version, "feature_columns": cols,
            "samples_key": prefix + "samples.parquet",
        }
        from skysift.trainer import tracking

        manifest["mlflow"] = tracking.log_dataset(self.settings.mlflow_tracking_uri, self.ts.mlflow_experiment_prefix,
                                                  manifest)
        self.store.put_bytes(prefix + "manifest.json", json.dumps(manifest, indent=2, default=str).encode())
        return _dataset(manifest)

    def list(self) -> list[Dataset]:
        found = [k for k in self.store.list_keys("datasets/") if k.endswith("/manifest.json")]
        return [_dataset(json.loads(self.store.get_bytes(k))) for k in found]

    def get(self, dataset_id: str) -> Dataset:
        return _dataset(read_manifest(self.store, dataset_id))


def read_manifest(store, dataset_id: str) -> dict:
    if not re.fullmatch(r"[a-z0-9-]+", dataset_id or ""):
        raise errors.InvalidArgument(f"invalid dataset id {dataset_id!r}")
    try:
        return json.loads(store.get_bytes(keys.dataset_prefix(dataset_id) + "manifest.json"))
    except errors.NotFound:
        raise errors.NotFound(f"no dataset {dataset_id!r}; `skysift dataset list` (ListDatasets over gRPC) shows the collected ones") from None


def training_labels(store, dataset_id: str, model_tag: str, force: bool = False) -> dict[int, tuple[str, int]]:
    """candid -> (label, target) of a dataset's samples, for a round trained on it.

    A dataset that failed its quality checks is refused (``force`` overrides): it was stored to be reported,
    not silently used. Its targets belong to the model tag it was collected for, so another tag is refused too.
    """
    manifest = read_manifest(store, dataset_id)
    if manifest["params"]["model_tag"] != model_tag:
        raise errors.InvalidArgument(f"dataset {dataset_id!r} was collected for model tag "
                                     f"{manifest['params']['model_tag']!r}, not {model_tag!r}")
    if not manifest["passed"] and not force:
        raise errors.FailedPrecondition(f"dataset {dataset_id!r} failed its quality checks: "
                                        f"{'; '.join(manifest['quality_issues'])} (use force to train on it anyway)")
    samples = store.read_table(manifest["samples_key"], columns=["candid", "label", "target"]).to_pandas()
    return {int(c): (str(lbl), int(t)) for c, lbl, t in zip(samples["candid"], samples["label"], samples["target"])}


def _choose(validated: pd.DataFrame, predicted: pd.DataFrame, req: DatasetRequest) -> pd.DataFrame:
    """Up to ``max_samples`` rows: validated first (or by confidence), equals in a seeded shuffle."""
    both = pd.concat([validated, predicted], ignore_index=True)
    if both.empty:
        return both
    shuffle = {c: i for i, c in enumerate(evaluation.stable_order(both["candid"], req.seed))}
    both["_order"] = both["candid"].map(shuffle)
    keys_ = ["validated", "confidence", "_order"] if req.prefer_validated else ["confidence", "_order"]
    ascending = [False, False, True] if req.prefer_validated else [False, True]
    both = both.sort_values(keys_, ascending=ascending).head(req.max_samples)
    return both.drop(columns="_order").reset_index(drop=True)


def _dataset(m: dict) -> Dataset:
    return Dataset(m["dataset_id"], m["name"], m["n_samples"], m["class_counts"], m["quality_score"],
                   m["quality_issues"], m["samples_key"], m)
