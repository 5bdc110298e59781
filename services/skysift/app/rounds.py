"""Round and strategy comparison from MLflow: what MLflow's own UI does not show well.

The trainer (:mod:`skysift.trainer.tracking`) logs one experiment per (model tag, experiment name), named
``<prefix>/<model tag>/<experiment>``, and one run per round with params ``round``, ``strategy``, ``n_train``,
``seed`` and metrics ``holdout_<accuracy|precision|recall|f1|roc_auc>`` plus the class balance
``train_n_positive``/``train_n_negative``; artifacts ``confusion_matrix.png`` and
``permutation_importance.{csv,png}``. Names are read defensively: a run without a column shows a gap, not an
error, so older runs and hand-made runs still list.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from skysift import errors
from skysift.redact import redact_uri

METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
INT_PARAMS = ("round", "n_train", "n_holdout", "seed", "batch_size", "initial_batch_size")
ARTIFACTS = {"confusion": "confusion_matrix.png", "importance_csv": "permutation_importance.csv",
             "importance_png": "permutation_importance.png"}


@dataclass(frozen=True)
class ExperimentRef:
    experiment_id: str
    name: str  # the MLflow name, e.g. skysift/galactic/default
    model_tag: str
    experiment: str


def connect(tracking_uri: str):
    """MLflow pointed at ``tracking_uri``; Unavailable (with the URI) when the server does not answer."""
    from skysift.trainer.tracking import connect as tracking_connect

    return tracking_connect(tracking_uri)


def _unavailable(tracking_uri: str, exc: Exception) -> errors.Unavailable:
    return errors.Unavailable(f"MLflow at {redact_uri(tracking_uri)} cannot be read: {exc}. Check SKYSIFT_MLFLOW_TRACKING_URI.")


def list_experiments(tracking_uri: str, prefix: str = "skysift") -> list[ExperimentRef]:
    """The trainer's experiments (names ``<prefix>/<tag>/<experiment>``), sorted by name."""
    mlflow = connect(tracking_uri)
    try:
        found = mlflow.search_experiments(filter_string=f"name LIKE '{prefix}/%'")
    except Exception as exc:  # noqa: BLE001 - MLflow raises many types for one cause: the server failed
        raise _unavailable(tracking_uri, exc) from None
    out = []
    for exp in found:
        parts = exp.name.split("/", 2)
        if len(parts) == 3:
            out.append(ExperimentRef(exp.experiment_id, exp.name, parts[1], parts[2]))
    return sorted(out, key=lambda e: e.name)


def search_runs(tracking_uri: str, experiments: list[ExperimentRef]) -> pd.DataFrame:
    """One row per finished round: run_id, experiment, model_tag, the params as numbers where they are, and
    the metrics under their plain names (``holdout_f1`` ...).

    Only FINISHED runs: a round logs its params first and its metrics last, so a run still RUNNING (a round being
    written, or one whose trainer died mid-way) or FAILED (MLflow failed during the round, which was then not
    created) would show as a round with gaps, or twice under one round number."""
    if not experiments:
        return pd.DataFrame(columns=["run_id", "experiment", "model_tag", "round"])
    mlflow = connect(tracking_uri)
    try:
        raw = mlflow.search_runs(experiment_ids=[e.experiment_id for e in experiments],
                                 filter_string="attributes.status = 'FINISHED'", output_format="pandas")
    except Exception as exc:  # noqa: BLE001
        raise _unavailable(tracking_uri, exc) from None
    return tidy_runs(raw, experiments)


def tidy_runs(raw: pd.DataFrame, experiments: list[ExperimentRef]) -> pd.DataFrame:
    """``mlflow.search_runs`` output with prefixes dropped, params typed, and rounds in order."""
    by_id = {e.experiment_id: e for e in experiments}
    out = pd.DataFrame({"run_id": raw.get("run_id", pd.Series(dtype=str))})
    out["experiment"] = [by_id[i].experiment if i in by_id else i for i in raw.get("experiment_id", [])]
    out["model_tag"] = [by_id[i].model_tag if i in by_id else "" for i in raw.get("experiment_id", [])]
    out["run_name"] = raw.get("tags.mlflow.runName")
    out["start_time"] = raw.get("start_time")
    for col in raw.columns:
        if col.startswith("params."):
            name = col.removeprefix("params.")
            values = raw[col]
            out[name] = pd.to_numeric(values, errors="coerce").astype("Int64") if name in INT_PARAMS else values
        elif col.startswith("metrics."):
            out[col.removeprefix("metrics.")] = raw[col]
    for name in ("round", "n_train", "strategy"):
        if name not in out:
            out[name] = pd.NA
    if "champion" not in out:
        out["champion"] = raw.get("tags.skysift.champion")
    return out.sort_values(["experiment", "round", "start_time"], ignore_index=True, na_position="last")


def metric_column(runs: pd.DataFrame, metric: str) -> str | None:
    """The column holding a held-out metric: ``holdout_<metric>``, else ``<metric>`` for runs logged plainly."""
    for name in (f"holdout_{metric}", metric):
        if name in runs.columns:
            return name
    return None


def round_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The per-round table: round, strategy, labels used, held-out metrics, class balance."""
    cols = ["experiment", "round", "strategy", "n_train", "n_holdout"]
    metric_cols = [c for c in (metric_column(runs, m) for m in METRICS) if c]
    balance = [c for c in ("train_n_positive", "train_n_negative", "train_positive_fraction") if c in runs.columns]
    keep = [c for c in cols if c in runs.columns] + metric_cols + balance + ["run_id"]
    return runs[keep].rename(columns={c: c.removeprefix("holdout_") for c in metric_cols})


def learning_curves(runs: pd.DataFrame, metric: str, x: str = "n_train", by: str = "strategy") -> pd.DataFrame:
    """Mean, spread (std, min, max) and count of ``metric`` at each ``x`` per ``by`` group, across experiments:
    strategies side by side, with the spread over seeds or repeated experiments."""
    col = metric_column(runs, metric)
    if col is None or x not in runs.columns or runs.empty:
        return pd.DataFrame(columns=[by, x, "mean", "std", "min", "max", "n"])
    data = runs[[by, x, col]].dropna()
    if data.empty:
        return pd.DataFrame(columns=[by, x, "mean", "std", "min", "max", "n"])
    grouped = data.groupby([by, x])[col]
    out = grouped.agg(["mean", "std", "min", "max", "count"]).reset_index().rename(columns={"count": "n"})
    out["std"] = out["std"].fillna(0.0)
    out[x] = out[x].astype(float)
    return out.sort_values([by, x], ignore_index=True)


def curves_chart(curves: pd.DataFrame, metric: str, x: str = "n_train", by: str = "strategy"):
    """Altair: one line per group (mean) with a band from min to max, against the number of labels."""
    import altair as alt

    base = alt.Chart(curves).encode(x=alt.X(f"{x}:Q", title="labels used for training"),
                                    color=alt.Color(f"{by}:N", title=by))
    band = base.mark_area(opacity=0.2).encode(y=alt.Y("min:Q", title=metric), y2="max:Q")
    line = base.mark_line(point=True).encode(
        y=alt.Y("mean:Q", title=f"held-out {metric}"),
        tooltip=[by, x, alt.Tooltip("mean:Q", format=".3f"), alt.Tooltip("std:Q", format=".3f"), "n"])
    return band + line


def class_balance(run: pd.Series, classes: tuple[str, str]) -> pd.DataFrame:
    """Training-set class counts of one run, named by the model tag's classes (negative, positive)."""
    rows = []
    for cls, col in zip(classes, ("train_n_negative", "train_n_positive")):
        value = run.get(col)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            rows.append({"class": cls, "count": int(value)})
    return pd.DataFrame(rows, columns=["class", "count"])


def differing(a: pd.Series, b: pd.Series, only_different: bool = True) -> pd.DataFrame:
    """Two runs side by side (every column but ids), optionally only the values that differ."""
    skip = {"run_id", "start_time"}
    rows = []
    for name in [c for c in a.index if c not in skip]:
        va, vb = a.get(name), b.get(name)
        same = _missing(va) and _missing(vb) if _missing(va) or _missing(vb) else va == vb
        if only_different and same:
            continue
        rows.append({"field": name, "A": _text(va), "B": _text(vb)})
    return pd.DataFrame(rows, columns=["field", "A", "B"])


def _missing(value) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and pd.isna(value))


def _text(value) -> str:
    if _missing(value):
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def run_artifacts(tracking_uri: str, run_id: str) -> dict:
    """The round's confusion matrix (PNG bytes) and permutation importance (table and PNG), where logged."""
    mlflow = connect(tracking_uri)
    try:
        names = {a.path for a in mlflow.artifacts.list_artifacts(run_id=run_id)}
    except Exception as exc:  # noqa: BLE001
        raise _unavailable(tracking_uri, exc) from None
    out: dict = {}
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        for key, name in ARTIFACTS.items():
            if name not in names:
                continue
            path = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=name, dst_path=tmp))
            out[key] = pd.read_csv(path) if name.endswith(".csv") else path.read_bytes()
    return out


def champion(tracking_uri: str, model_tag: str, model_prefix: str) -> dict | None:
    """The registered champion of ``<prefix>_<tag>``: version, run, experiment and round; None when there is none."""
    from skysift.modeltags import get_tag
    from skysift.trainer.tracking import CHAMPION

    mlflow = connect(tracking_uri)
    client = mlflow.MlflowClient()
    name = get_tag(model_tag).registered_name(model_prefix)
    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        return None
    except Exception as exc:  # noqa: BLE001
        raise _unavailable(tracking_uri, exc) from None
    return {"model": name, "version": version.version, "run_id": version.run_id,
            "experiment": version.tags.get("experiment", ""), "round": version.tags.get("round", "")}
