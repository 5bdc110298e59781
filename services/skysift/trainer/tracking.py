"""MLflow: one experiment per (model tag, experiment name), one run per round, the registry and its champion.

What inference relies on: the model is logged with ``mlflow.sklearn`` under the artifact name ``model`` with a
signature and an input example, registered as ``skysift_<tag>``, and each version carries the tags
``feature_set_version``, ``model_tag`` and ``feature_columns`` (JSON list, the column order of predict_proba's X).

The ``champion`` alias (the rule is :func:`skysift.trainer.evaluation.promotion`) moves to a new version only if it is not worse than the current champion on *this*
round's held-out set (both models scored on the same rows, ``champion_metric``, default F1, with an optional
tolerance). A champion trained on another feature set is replaced (it cannot score these features); with no
held-out labels there is nothing to compare on and the alias stays where it is (unless there is no champion).
The alias is moved last, after the round's run has ended: a round that MLflow fails before that leaves it alone.
Caveat: a champion from another experiment may have trained on some of these held-out rows, which favours it.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from skysift import errors
from skysift.modeltags import ModelTag
from skysift.redact import redact_uri
from skysift.trainer import evaluation

CHAMPION = "champion"


def experiment_name(prefix: str, model_tag: str, experiment: str) -> str:
    return f"{prefix}/{model_tag}/{experiment}"


def connect(tracking_uri: str):
    """Point MLflow at ``tracking_uri`` after checking an HTTP server answers (MLflow's own retries take minutes)."""
    import mlflow

    if tracking_uri.startswith(("http://", "https://")):
        import requests

        try:
            requests.get(tracking_uri.rstrip("/") + "/health", timeout=5).raise_for_status()
        except requests.RequestException as exc:
            raise errors.Unavailable(f"MLflow tracking server {redact_uri(tracking_uri)} is not reachable: {exc}") from None
    mlflow.set_tracking_uri(tracking_uri)
    return mlflow


def experiment_id(mlflow, name: str) -> str:
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return mlflow.create_experiment(name)
    except mlflow.exceptions.MlflowException:  # created concurrently
        return mlflow.get_experiment_by_name(name).experiment_id


@dataclass
class RoundLog:
    """Everything a round logs; ``model`` is None when no model could be fitted (the run is still logged)."""

    tracking_uri: str
    settings: object
    tag: ModelTag
    model_name: str  # the registered model (``ModelTag.registered_name``)
    experiment: str
    round: int
    strategy: str
    seed: int
    batch_size: int
    initial_batch_size: int
    params: dict
    spec: object
    model: object
    X_train: pd.DataFrame
    y_train: np.ndarray
    X_holdout: pd.DataFrame
    y_holdout: np.ndarray
    metrics: dict
    quality: object
    queue: pd.DataFrame
    training_ids: pd.DataFrame
    holdout_ids: pd.DataFrame
    message: str
    dataset_id: str = ""  # the collected dataset trained on; empty: the label events


@dataclass
class Tracked:
    run_id: str
    model_version: str = ""
    champion_moved: bool = False
    metrics: dict = field(default_factory=dict)
    message: str = ""


def _balance_metrics(prefix: str, y, tag: ModelTag) -> dict[str, float]:
    if tag.multiclass:
        counts = np.bincount(np.asarray(y, dtype=int), minlength=len(tag.classes))
        return {f"{prefix}_n": len(y), **{f"{prefix}_n_{c}": int(n) for c, n in zip(tag.classes, counts)}}
    b = evaluation.class_balance(y)
    out = {f"{prefix}_n": b["n"], f"{prefix}_n_positive": b["n_positive"], f"{prefix}_n_negative": b["n_negative"]}
    if b["n"]:
        out[f"{prefix}_positive_fraction"] = b["positive_fraction"]
    return out


def _input_example(X: pd.DataFrame) -> pd.DataFrame:
    """Two training rows with the fewest NaNs (NaN does not survive the JSON example)."""
    order = X.isna().sum(axis=1).sort_values(kind="stable").index[:2]
    return X.loc[order].fillna(0.0).reset_index(drop=True)


def log_round(r: RoundLog) -> Tracked:
    try:
        return _log_round(r)
    except errors.SkysiftError:
        raise
    except Exception as exc:
        import requests

        if isinstance(exc, requests.RequestException) or "Max retries" in str(exc):
            raise errors.Unavailable(f"MLflow at {redact_uri(r.tracking_uri)} failed during round {r.round}: {exc}") from None
        raise


def _log_round(r: RoundLog) -> Tracked:
    mlflow = connect(r.tracking_uri)
    s = r.settings
    exp = experiment_id(mlflow, experiment_name(s.mlflow_experiment_prefix, r.tag.name, r.experiment))
    cols = list(r.spec.columns)
    metrics = {k: v for k, v in r.metrics.items() if v is not None and np.isfinite(v)}
    metrics.update(_balance_metrics("train", r.y_train, r.tag))
    metrics.update(_balance_metrics("holdout", r.y_holdout, r.tag))
    metrics["queue_size"] = len(r.queue)
    if r.quality is not None:
        metrics["train_quality_score"] = r.quality.score
    tracked_metrics: dict[str, float] = {}
    with mlflow.start_run(experiment_id=exp, run_name=f"round_{r.round:03d}_{r.strategy}") as run:
        mlflow.log_params({
            "round": r.round, "strategy": r.strategy, "batch_size": r.batch_size,
            "initial_batch_size": r.initial_batch_size, "seed": r.seed, "n_train": len(r.y_train),
            "n_holdout": len(r.y_holdout), "feature_set_version": r.spec.version, "model_tag": r.tag.name,
            "experiment": r.experiment, "holdout_fraction": s.holdout_fraction,
            "validation_set": s.validation_key or "split", "champion_metric": _champion_metric(r),
            **{k: "none" if v is None else v for k, v in r.params.items()},
            **({"dataset_id": r.dataset_id} if r.dataset_id else {}),
        })
        mlflow.set_tags({"skysift.message": r.message[:5000], "skysift.quality_issues": "; ".join(r.quality.issues)
                         if r.quality else ""})
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            r.training_ids.to_csv(out / "training_ids.csv", index=False)
            r.holdout_ids.to_csv(out / "holdout_ids.csv", index=False)
            r.queue.to_csv(out / "queue.csv", index=False)
            if r.quality is not None:
                (out / "quality.json").write_text(json.dumps({"score": r.quality.score, "issues": r.quality.issues,
                                                              "stats": r.quality.stats}, indent=2))
            if r.model is not None:
                _model_plots(r, out)
            mlflow.log_artifacts(tmp)
        tracked = Tracked(run.info.run_id)
        if r.model is not None:
            tracked = _register(mlflow, r, run.info.run_id, cols, metrics)
            tracked_metrics = tracked.metrics
        mlflow.log_metrics({**metrics, **tracked_metrics})
    if tracked.champion_moved:
        # The last request of the round, once its run is complete: a round failing before it leaves the champion.
        from mlflow import MlflowClient

        MlflowClient().set_registered_model_alias(r.model_name, CHAMPION, tracked.model_version)
    return tracked


def _champion_metric(r: RoundLog) -> str:
    """What the champion rule compares: the setting for a binary model, macro F1 for a multi-class one (its
    classes count the same, however rare)."""
    return "f1_macro" if r.tag.multiclass else r.settings.champion_metric


def _model_plots(r: RoundLog, out: Path) -> None:
    s = r.settings
    classes = r.tag.classes
    if len(r.y_holdout):
        if r.tag.multiclass:
            confusion = evaluation.Confusion.of_predictions(r.y_holdout, r.model.predict(r.X_holdout), classes)
        else:  # the round's held-out cells, at its decision threshold
            cells = {k: r.metrics[f"holdout_{k}"] for k in ("tn", "fp", "fn", "tp")}
            confusion = evaluation.Confusion.from_logged(cells, classes)
        (out / "confusion_matrix.png").write_bytes(confusion.png(f"held-out, round {r.round} (n={confusion.n})"))
        (out / "confusion_matrix.json").write_text(json.dumps(confusion.logged()))
    # importance on the held-out rows when they hold two classes or more, else (said in the title) on the training
    # rows
    on_holdout = len(np.unique(r.y_holdout)) >= 2
    X, y = (r.X_holdout, r.y_holdout) if on_holdout else (r.X_train, r.y_train)
    scoring = _champion_metric(r) if on_holdout else "accuracy"
    table = evaluation.permutation_table(r.model, X, y, scoring, s.permutation_repeats, r.seed)
    table.to_csv(out / "permutation_importance.csv", index=False)
    where = "held-out" if on_holdout else "training (no two-class held-out set)"
    (out / "permutation_importance.png").write_bytes(
        evaluation.importance_plot(table, f"permutation importance ({scoring}) on {where} rows, round {r.round}"))


def _register(mlflow, r: RoundLog, run_id: str, cols: list[str], metrics: dict) -> Tracked:
    import sklearn
    import skops
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    name = r.model_name
    signature = infer_signature(r.X_train, r.model.predict(r.X_train))
    info = mlflow.sklearn.log_model(
        r.model, name="model", signature=signature, input_example=_input_example(r.X_train),
        registered_model_name=name, pip_requirements=[f"scikit-learn=={sklearn.__version__}", f"skops=={skops.__version__}"],
        # MLflow saves with skops, which only loads types it is told to trust; these are our own trees
        skops_trusted_types=["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"],
    )
    version = str(info.registered_model_version)
    client = MlflowClient()
    hierarchy = {"classes": json.dumps(list(r.tag.classes)), "taxonomy": json.dumps(r.tag.hierarchy())}
    for key, value in {"feature_set_version": r.spec.version, "model_tag": r.tag.name,
                       "feature_columns": json.dumps(cols), "experiment": r.experiment, "round": str(r.round),
                       "run_id": run_id, **(hierarchy if r.tag.multiclass else {})}.items():
        client.set_model_version_tag(name, version, key, value)
    moved, message, extra = _champion(mlflow, client, r, name, version, cols, metrics)
    mlflow.set_tag("skysift.champion", message)
    return Tracked(run_id, version, moved, extra, message)


def _champion(mlflow, client, r: RoundLog, name: str, version: str, cols: list[str], metrics: dict
              ) -> tuple[bool, str, dict]:
    """Gather what the champion rule (:func:`.evaluation.promotion`) compares; return (move, why, metrics)."""
    metric = _champion_metric(r)
    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        return (*evaluation.promotion(name, version, metric, None), {})
    same = current.tags.get("feature_columns") == json.dumps(cols) and current.tags.get("feature_set_version") == r.spec.version
    new_value = metrics.get(f"holdout_{metric}")
    old_value = None
    if same and new_value is not None:
        old = mlflow.sklearn.load_model(f"models:/{name}/{current.version}")
        proba = old.predict_proba(r.X_holdout[cols])
        old_value = (evaluation.multiclass_metrics(r.y_holdout, proba, r.tag.classes) if r.tag.multiclass else
                     evaluation.metrics(r.y_holdout, proba[:, 1])).get(metric)
    moved, why = evaluation.promotion(name, version, metric, new_value, current.version, old_value, same,
                                      r.settings.champion_tolerance)
    return moved, why, {f"champion_holdout_{metric}": old_value} if old_value is not None else {}


def log_dataset(tracking_uri: str, prefix: str, manifest: dict) -> dict:
    """Log a dataset's statistics as the run ``training_data_<id>``; returns where, or why it could not.

    Best effort, as in AstrID: the dataset is stored whether or not MLflow answers, and the manifest says which.
    """
    try:
        mlflow = connect(tracking_uri)
        exp = experiment_id(mlflow, f"{prefix}/datasets")
        counts = manifest["class_counts"]
        n = manifest["n_samples"]
        with mlflow.start_run(experiment_id=exp, run_name=f"training_data_{manifest['dataset_id']}") as run:
            mlflow.log_params({k: "" if v is None else v for k, v in manifest["params"].items()})
            mlflow.log_metrics({
                "total_samples": n, "n_validated": manifest["n_validated"], "n_predicted": manifest["n_predicted"],
                "data_quality_score": manifest["quality_score"],
                **{f"n_{k}": v for k, v in counts.items()},
                **({"positive_ratio": list(counts.values())[1] / n} if n and len(counts) == 2 else {}),
            })
            mlflow.set_tags({"skysift.dataset_id": manifest["dataset_id"], "skysift.passed": str(manifest["passed"]),
                             "skysift.quality_issues": "; ".join(manifest["quality_issues"])})
            mlflow.log_dict(manifest, "manifest.json")
        return {"run_id": run.info.run_id, "experiment": f"{prefix}/datasets"}
    except errors.Unavailable as exc:
        return {"run_id": None, "error": str(exc)}


def log_experiment(tracking_uri: str, prefix: str, model_tag: str, name: str, params: dict, points: pd.DataFrame,
                   summary: pd.DataFrame, report: pd.DataFrame, plot_png: bytes, verdict: str) -> str:
    """A parent run with the plot and tables, and one child run per configuration whose metrics are the mean
    and spread over seeds at each number of labels (step = labels), so MLflow draws the learning curves."""
    mlflow = connect(tracking_uri)
    exp = experiment_id(mlflow, experiment_name(prefix, model_tag, f"experiment-{name}"))
    with mlflow.start_run(experiment_id=exp, run_name=f"experiment_{name}") as parent:
        mlflow.log_params({k: v if not isinstance(v, (list, tuple)) else ",".join(map(str, v)) for k, v in params.items()})
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            points.to_csv(out / "learning_curves_points.csv", index=False)
            summary.to_csv(out / "learning_curves.csv", index=False)
            report.to_csv(out / "report.csv", index=False)
            (out / "learning_curves.png").write_bytes(plot_png)
            (out / "verdict.txt").write_text(verdict + "\n")
            mlflow.log_artifacts(tmp)
        best = report.iloc[0]
        mlflow.log_metrics({"best_mean_f1": float(best["mean_f1"])})
        mlflow.set_tag("skysift.best_config", best["config"])
        for config, curve in summary.groupby("config", sort=False):
            with mlflow.start_run(experiment_id=exp, run_name=config, nested=True):
                first = points[points["config"] == config].iloc[0]
                mlflow.log_params({k: first[k] for k in ("strategy", "initial_batch_size", "initial", "batch_size",
                                                         "learning_rate", "class_weight", "threshold")})
                for row in curve.itertuples(index=False):
                    values = {k: float(v) for k, v in row._asdict().items()
                              if k.endswith(("_mean", "_std")) and np.isfinite(v)}
                    mlflow.log_metrics(values, step=int(row.n_labels))
        return parent.info.run_id
