"""Round and strategy comparison from MLflow: what MLflow's own UI does not show well.

The trainer (:mod:`skysift.trainer.tracking`) logs one experiment per (model tag, experiment name), named
``<prefix>/<model tag>/<experiment>``, and one run per round with params ``round``, ``strategy``, ``n_train``,
``seed`` and metrics ``holdout_<accuracy|precision|recall|f1|roc_auc>`` plus the class balance
``train_n_positive``/``train_n_negative``; artifacts ``confusion_matrix.png`` and
``permutation_importance.{csv,png}``. Names are read defensively: a run without a column shows a gap, not an
error, so older runs and hand-made runs still list.

Over ~350 lines: it is the rounds page's whole model (runs, learning curves, intervals, charts), kept apart from
Streamlit so each piece is tested without a page; splitting it would scatter one page's logic over modules.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass

import pandas as pd

from skysift import errors
from skysift.redact import redact_uri
from skysift.trainer.evaluation import Confusion

METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
SHOWN_METRIC_ORDER = ("f1", "precision", "recall", "accuracy", "roc_auc")  # the headline metric first
INT_PARAMS = ("round", "n_train", "n_holdout", "seed", "batch_size", "initial_batch_size")
ARTIFACTS = {"confusion": "confusion_matrix.png", "confusion_counts": "confusion_matrix.json",
             "importance_csv": "permutation_importance.csv", "importance_png": "permutation_importance.png",
             "learning_curves": "learning_curves.csv"}
CONFIDENCE = 0.95
_DASH = "–"  # what a round without a value shows
BOOTSTRAP_DRAWS = 2000


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
    out["experiment_id"] = raw.get("experiment_id")
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


def with_intervals(table: pd.DataFrame, counts_by_run: dict[str, dict], champion_run: str | None) -> pd.DataFrame:
    """The per-round table with, beside each metric, the held-out alerts it rests on and its 95 % interval, and
    the champion's round marked: on 5 held-out alerts an F1 of 0.667 and one of 0.5 are the same result."""
    out = table.copy()
    out.insert(0, "champion", ["★" if r == champion_run else "" for r in out["run_id"]])
    for metric in ("accuracy", "precision", "recall", "f1"):
        if metric not in out:
            continue
        found = [metric_intervals(counts_by_run[r])[metric] if r in counts_by_run else (None, None)
                 for r in out["run_id"]]
        at = out.columns.get_loc(metric) + 1
        out.insert(at, f"{metric} 95%", [interval_text(ci) for _, ci in found])
        out.insert(at, f"{metric} n", pd.array([n for n, _ in found], dtype="Int64"))
    return out


def shown_table(table: pd.DataFrame) -> pd.DataFrame:
    """The per-round table as the page shows it: metrics to three decimals, counts as whole numbers, and a dash
    where a round has no value (round 0 trains nothing and is evaluated on nothing: Streamlit wrote "None" there).
    The MLflow links are left out when no run has one (a sqlite store has no UI to link to), the experiment when
    every row has the one chosen above the table, and F1 comes first: at 1400 px its n and interval were scrolled
    off to the right."""
    out = table.copy()
    if "mlflow" in out and out["mlflow"].isna().all():
        out = out.drop(columns="mlflow")
    if "experiment" in out and out["experiment"].nunique() <= 1:
        out = out.drop(columns="experiment")
    metric_cols = [c for m in SHOWN_METRIC_ORDER for c in out.columns if c == m or c.startswith(f"{m} ")]
    if metric_cols:
        at = min(out.columns.get_loc(c) for c in metric_cols)
        out = out[[c for c in out.columns[:at] if c not in metric_cols] + metric_cols
                  + [c for c in out.columns[at:] if c not in metric_cols]]
    for name in out.columns:
        if name == "mlflow":
            continue
        values = out[name]
        if name in METRICS or name == "train_positive_fraction":
            out[name] = [_DASH if _missing(v) else f"{float(v):.3f}" for v in values]
        elif values.isna().any():
            out[name] = [_DASH if _missing(v) else _count_text(v) for v in values]
    return out


def _count_text(value) -> str:
    """A count as '12' whether pandas holds it as 12, 12.0 or an Int64."""
    return str(int(value)) if isinstance(value, numbers.Real) and float(value).is_integer() else str(value)


def round_curve(runs: pd.DataFrame, metric: str, counts_by_run: dict[str, dict]) -> pd.DataFrame:
    """One experiment's ``metric`` per round against the labels used, with its 95 % interval as the band."""
    col = metric_column(runs, metric)
    rows = []
    for _, run in (runs.dropna(subset=[col]) if col else runs.iloc[:0]).iterrows():
        n, ci = metric_intervals(counts_by_run[run["run_id"]]).get(metric, (None, None)) \
            if run["run_id"] in counts_by_run else (None, None)
        value = float(run[col])
        rows.append({"strategy": run.get("strategy"), "n_train": int(run["n_train"]), "round": int(run["round"]),
                     "mean": value, "min": ci[0] if ci else value, "max": ci[1] if ci else value, "n": n,
                     "run_id": run["run_id"]})
    return pd.DataFrame(rows, columns=["strategy", "n_train", "round", "mean", "min", "max", "n", "run_id"])


def champion_mark(curve: pd.DataFrame, champion_run: str | None):
    """Altair: a star on the champion's round, drawn over :func:`curves_chart`."""
    import altair as alt

    return alt.Chart(curve[curve["run_id"] == champion_run]).mark_point(
        shape="diamond", size=220, filled=True, color="#f2b701", stroke="black").encode(
        x="n_train:Q", y="mean:Q", tooltip=[alt.Tooltip("round:Q", title="champion round")])


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


def curves_chart(curves: pd.DataFrame, metric: str, x: str = "n_train", by: str = "strategy", band: str = "min to max"):
    """Altair: one line per group (mean) with a band (``min``..``max``), against the number of labels, which is
    a count: whole numbers on its axis."""
    import altair as alt

    base = alt.Chart(curves).encode(
        x=alt.X(f"{x}:Q", title="labels used for training", axis=alt.Axis(format="d", tickMinStep=1)),
        color=alt.Color(f"{by}:N", title=by))
    title = f"held-out {metric} ({band} shaded)"
    area = base.mark_area(opacity=0.2).encode(y=alt.Y("min:Q", title=title), y2="max:Q")
    line = base.mark_line(point=True).encode(
        y=alt.Y("mean:Q", title=title, scale=alt.Scale(domain=[0, 1])),
        tooltip=[by, alt.Tooltip(f"{x}:Q", format="d"), alt.Tooltip("mean:Q", format=".3f"),
                 alt.Tooltip("min:Q", format=".3f"), alt.Tooltip("max:Q", format=".3f"), "n"])
    return area + line


def wilson(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Wilson score interval of a proportion; None without trials. Good at small n and near 0 or 1, where the
    normal approximation gives impossible bounds."""
    from scipy.stats import norm

    if n <= 0:
        return None
    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def f1_bootstrap(counts: dict, confidence: float = CONFIDENCE, draws: int = BOOTSTRAP_DRAWS, seed: int = 0
                 ) -> tuple[float, float] | None:
    """Percentile bootstrap of F1 over the held-out alerts: resampling alerts with replacement is drawing the
    confusion cells from a multinomial. The cells' shares are drawn from a Dirichlet with half a count added to each
    (Jeffreys): with the observed shares alone a perfect score on four alerts would get the interval 1.00-1.00,
    as if four alerts proved it. Resamples without a positive (F1 undefined) are left out; None when none has one."""
    import numpy as np

    cells = np.array([counts.get(k, 0) for k in ("tp", "fp", "fn", "tn")], dtype=float)
    n = int(cells.sum())
    if n == 0:
        return None
    rng = np.random.default_rng(seed)
    tp, fp, fn, _ = rng.multinomial(n, rng.dirichlet(cells + 0.5, size=draws)).T
    denominator = 2 * tp + fp + fn
    f1 = (2 * tp / np.where(denominator > 0, denominator, 1))[denominator > 0]
    if not f1.size:
        return None
    tail = (1 - confidence) / 2 * 100
    return float(np.percentile(f1, tail)), float(np.percentile(f1, 100 - tail))


def metric_intervals(counts: dict) -> dict[str, tuple[int, tuple[float, float] | None]]:
    """Per metric, the number of held-out alerts it rests on and its 95 % interval, from the confusion counts:
    Wilson for accuracy (all alerts), precision (predicted positives) and recall (true positives); bootstrap for
    F1. ROC AUC needs the scores, which are not logged: none. A multi-class matrix gives accuracy's interval only
    (its macro metrics rest on every held-out alert, with no interval computed here)."""
    if "matrix" in counts:
        confusion = Confusion.from_logged(counts)
        n = confusion.n
        return {"accuracy": (n, wilson(int(confusion.matrix.trace()), n)),
                **{metric: (n, None) for metric in ("precision", "recall", "f1")}}
    tp, fp, fn, tn = (int(counts.get(k, 0)) for k in ("tp", "fp", "fn", "tn"))
    n = tp + fp + fn + tn
    return {"accuracy": (n, wilson(tp + tn, n)), "precision": (tp + fp, wilson(tp, tp + fp)),
            "recall": (tp + fn, wilson(tp, tp + fn)), "f1": (n, f1_bootstrap(counts))}


def interval_text(found: tuple[float, float] | None) -> str:
    return _DASH if found is None else f"{found[0]:.2f}–{found[1]:.2f}"


def run_link(tracking_uri: str, experiment_id, run_id: str) -> str | None:
    """The run's page in the MLflow UI, when the tracking URI is a server (a sqlite file has no UI to link)."""
    if not tracking_uri.startswith(("http://", "https://")) or experiment_id is None:
        return None
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def experiment_curves(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    """A `skysift experiment`'s learning curves (its ``learning_curves.csv``: mean, std and count over seeds per
    configuration and number of labels) in the shape :func:`curves_chart` draws, the band one std either side."""
    mean, std = f"{metric}_mean", f"{metric}_std"
    if summary.empty or mean not in summary:
        return pd.DataFrame(columns=["strategy", "n_train", "mean", "std", "min", "max", "n"])
    spread = summary[std].fillna(0.0) if std in summary else 0.0
    return pd.DataFrame({"strategy": summary["config"], "n_train": summary["n_labels"].astype(int),
                         "mean": summary[mean], "std": summary.get(std), "min": summary[mean] - spread,
                         "max": summary[mean] + spread, "n": summary.get(f"{metric}_count")})


def importance_chart(table: pd.DataFrame, top: int = 15):
    """Altair: the ``top`` features by mean permutation importance, as horizontal bars with their spread, most
    important at the top. Both layers get the same explicit order: sorted each by its own x ("-x" on the bars,
    on the spread's low end), they disagreed, Vega fell back to alphabetical order and drew the bars a row off."""
    import altair as alt

    shown = table.sort_values("importance_mean", ascending=False).head(top)
    y = alt.Y("feature:N", sort=list(shown["feature"]), title=None)
    bars = alt.Chart(shown).mark_bar().encode(y=y, x=alt.X("importance_mean:Q",
                                                           title="drop in the score when shuffled"))
    if "importance_std" in shown:
        shown = shown.assign(lo=shown["importance_mean"] - shown["importance_std"],
                             hi=shown["importance_mean"] + shown["importance_std"])
        return bars + alt.Chart(shown).mark_rule().encode(y=y, x="lo:Q", x2="hi:Q")
    return bars


def class_chart(counts: pd.DataFrame):
    """Altair: labels per class as horizontal bars, names written across (st.bar_chart stood them on end under
    tall bars that pushed the rest of the page below the screen)."""
    import altair as alt

    return alt.Chart(counts).mark_bar().encode(
        y=alt.Y("class:N", title=None, sort="-x"), x=alt.X("count:Q", title="alerts", axis=alt.Axis(format="d",
                                                                                                    tickMinStep=1)),
        tooltip=["class", "count"]).properties(height=alt.Step(30))  # a fixed height was squeezed to hairlines


def class_balance(run: pd.Series, classes: tuple[str, ...]) -> pd.DataFrame:
    """Training-set class counts of one run, named by the model tag's classes: a multi-class round logs
    ``train_n_<class>``, a binary one ``train_n_negative`` and ``train_n_positive``."""
    binary = ("train_n_negative", "train_n_positive") if len(classes) == 2 else (None,) * len(classes)
    rows = []
    for cls, binary_col in zip(classes, binary):
        value = run.get(f"train_n_{cls}", run.get(binary_col) if binary_col else None)
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
        return _DASH
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
            if name.endswith(".csv"):
                out[key] = pd.read_csv(path)
            elif name.endswith(".json"):
                out[key] = json.loads(path.read_text())
            else:
                out[key] = path.read_bytes()
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
