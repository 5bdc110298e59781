"""Experiments without a human: replay a labelled set with an oracle to compare strategies and settings.

For each seed the labelled set is split once into a held-out part (stratified, ``holdout_fraction``) and a
pool; every configuration (strategy, initial and per-round batch size, learning rate, class weight) then
starts from the same seeded random initial batch of that pool, so configurations are compared on identical
data. Each round fits, evaluates on the held-out part, queries ``batch_size`` more from the pool with the
strategy and reveals their oracle labels, until ``max_labels``. The fit, query and metrics are the very
functions a production round uses (:func:`skysift.trainer.rounds.fit_and_query`, :mod:`.evaluation`).

Output: every point (configuration, seed, number of labels, metrics), the mean and spread over seeds per
number of labels, an area-under-the-learning-curve table (mean held-out F1 over the curve), a plot, and the
same in MLflow. Which configuration wins is read off those numbers, whichever it is.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from skysift import errors
from skysift.modeltags import get_tag
from skysift.trainer import evaluation, strategies
from skysift.trainer.rounds import can_fit, fit_and_query, limited_threads, model_params

CURVE_METRICS = ("f1", "accuracy", "precision", "recall", "roc_auc")


@dataclass
class LabelledSet:
    """Features and 0/1 targets of labelled examples (the oracle's answers)."""

    name: str
    X: pd.DataFrame
    y: np.ndarray
    ids: np.ndarray
    classes: tuple[str, str]
    feature_set_version: str = ""

    def describe(self) -> str:
        pos = int(self.y.sum())
        return (f"{self.name}: {len(self.y)} labelled ({self.classes[1]} {pos}, {self.classes[0]} {len(self.y) - pos}), "
                f"{self.X.shape[1]} features")


def from_alerts(paths: list[Path], labels_csv: Path, model_tag: str = "galactic") -> LabelledSet:
    """Alert files (Avro containers or parquet) with Fink's SIMBAD types as oracle: decode → features → join."""
    from skysift.alerts.decode import Packet
    from skysift.chain import features_of_packets
    from skysift.features.sets import configured
    from skysift.trainer.oracle import oracle_labels

    files = sorted({f for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.suffix in (".avro", ".parquet")})
    if not files:
        raise errors.InvalidArgument(f"no .avro or .parquet alert files under {', '.join(map(str, paths))}")
    feature_set = configured()
    chained = features_of_packets([Packet(f.read_bytes(), source=str(f)) for f in files], feature_set=feature_set)
    if not chained.surveys:
        raise errors.InvalidArgument(f"no alert decoded from {len(files)} files")
    features = pd.concat([part.features.to_pandas() for part in chained.surveys])
    features = features.drop_duplicates("candid", keep="last")
    labels = oracle_labels(pd.read_csv(labels_csv))
    tag = get_tag(model_tag)
    labels["target"] = labels["label"].map(tag.target)
    joined = features.merge(labels.dropna(subset=["target"]), on="candid")
    return LabelledSet(f"alerts+oracle ({labels_csv.name})", joined[feature_set.columns].reset_index(drop=True),
                       joined["target"].to_numpy(dtype=int), joined["candid"].to_numpy(), tag.classes, feature_set.version)


def from_table(path: Path, label_column: str = "label", id_column: str | None = None,
               classes: tuple[str, str] = ("negative", "positive")) -> LabelledSet:
    """A labelled feature table (CSV or parquet): every numeric column except the id and label is a feature."""
    table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    if label_column not in table:
        raise errors.InvalidArgument(f"{path}: no label column {label_column!r}; columns: {', '.join(table.columns[:10])}...")
    y = table[label_column]
    if set(y.dropna().unique()) - {0, 1}:
        raise errors.InvalidArgument(f"{path}: label column {label_column!r} must hold 0/1")
    table = table[y.notna()]
    ids = table[id_column].to_numpy() if id_column else np.arange(len(table))
    X = table.drop(columns=[c for c in (label_column, id_column) if c]).select_dtypes("number").astype("float64")
    return LabelledSet(path.name, X.reset_index(drop=True), table[label_column].to_numpy(dtype=int), ids, classes)


def from_store(store, model_tag: str) -> LabelledSet:
    """The store's own labels on its stored features: replay what humans labelled."""
    from skysift.trainer.labels import LabelStore
    from skysift.trainer.rounds import FeatureSpec, load_pool

    tag = get_tag(model_tag)
    spec = FeatureSpec.current()
    targets = {c: tag.target(e.label) for c, e in LabelStore(store).latest().items()}
    pool = load_pool(store, spec)
    pool = pool[pool["candid"].map(lambda c: targets.get(c) is not None)].reset_index(drop=True)
    return LabelledSet(f"store labels ({store.url})", pool[list(spec.columns)],
                       pool["candid"].map(targets).to_numpy(dtype=int), pool["candid"].to_numpy(), tag.classes, spec.version)


@dataclass(frozen=True)
class Config:
    strategy: str
    initial_batch_size: int = 30
    batch_size: int = 10
    learning_rate: float = 0.1
    class_weight: str = "none"

    @property
    def label(self) -> str:
        return (f"{self.strategy} init={self.initial_batch_size} +{self.batch_size} lr={self.learning_rate:g} "
                f"cw={self.class_weight}")


def grid(strategy_names, initial_sizes=(30,), batch_sizes=(10,), learning_rates=(0.1,), class_weights=("none",)):
    return [Config(strategies.check_strategy(s), int(i), int(b), float(lr), str(cw))
            for s, i, b, lr, cw in itertools.product(strategy_names, initial_sizes, batch_sizes, learning_rates, class_weights)]


def simulate(data: LabelledSet, config: Config, seed: int, max_labels: int, holdout_fraction: float = 0.3,
             base_params: dict | None = None, committee_size: int = 5, threads: int = 1) -> list[dict]:
    """One learning curve: a point per round with the number of labels and the held-out metrics."""
    with limited_threads(threads):  # see TrainerSettings.threads
        return _simulate(data, config, seed, max_labels, holdout_fraction, base_params, committee_size)


def _simulate(data, config, seed, max_labels, holdout_fraction, base_params, committee_size) -> list[dict]:
    positions = {c: i for i, c in enumerate(data.ids)}
    targets = dict(zip(data.ids, data.y))
    held_ids = evaluation.assign_holdout(targets, {}, Counter(data.y.tolist()), holdout_fraction, seed)
    held = np.array(sorted(positions[c] for c in held_ids), dtype=int)
    pool = np.array([positions[c] for c in evaluation.stable_order(set(data.ids) - held_ids, seed)], dtype=int)
    params = model_params({**(base_params or {}), "learning_rate": config.learning_rate,
                           "class_weight": config.class_weight})
    labelled = list(pool[: config.initial_batch_size])  # seeded order: the initial batch is random
    unlabelled = pool[config.initial_batch_size:]
    rng = np.random.default_rng([seed, 1])
    points = []
    for round_number in itertools.count():
        y_train = data.y[labelled]
        room = max_labels - len(labelled)
        n = min(config.batch_size, room, len(unlabelled))
        if can_fit(y_train):
            fitted = fit_and_query(data.X.iloc[labelled], y_train, data.X.iloc[unlabelled], config.strategy, n,
                                   params, seed, rng, committee_size, data.classes[1])
            m = evaluation.metrics(data.y[held], fitted.model.predict_proba(data.X.iloc[held])[:, 1])
            picked = fitted.ranked.index
        else:  # one class so far: nothing to fit, keep sampling at random
            m = {}
            picked = rng.permutation(len(unlabelled))[:n]
        points.append({**asdict(config), "config": config.label, "seed": seed, "round": round_number,
                       "n_labels": len(labelled), "train_positive_fraction": float(y_train.mean()),
                       **{k: m.get(k, np.nan) for k in CURVE_METRICS}})
        if n <= 0:
            return points
        labelled.extend(unlabelled[picked].tolist())
        unlabelled = np.delete(unlabelled, picked)


def run(data: LabelledSet, configs: list[Config], seeds: list[int], max_labels: int, holdout_fraction: float = 0.3,
        base_params: dict | None = None, progress: Callable[[int], None] | None = None, threads: int = 1
        ) -> pd.DataFrame:
    """Every configuration over every seed; ``progress`` is called with 1 after each curve."""
    if len(data.y) < 10 or len(np.unique(data.y)) < 2:
        raise errors.FailedPrecondition(f"{data.describe()}: need at least 10 labelled examples of both classes")
    n_pool = len(data.y) - round(holdout_fraction * len(data.y))
    if max_labels > n_pool:
        raise errors.InvalidArgument(f"max_labels {max_labels} exceeds the pool ({n_pool} after holding out "
                                     f"{holdout_fraction:.0%}); lower it")
    rows = []
    for config in configs:
        for seed in seeds:
            rows.extend(simulate(data, config, seed, max_labels, holdout_fraction, base_params, threads=threads))
            if progress:
                progress(1)
    return pd.DataFrame(rows)


def summarise(points: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation and count over seeds, per configuration and number of labels."""
    stats = points.groupby(["config", "n_labels"])[list(CURVE_METRICS)].agg(["mean", "std", "count"])
    stats.columns = [f"{m}_{s}" for m, s in stats.columns]
    return stats.reset_index()


def area_under_curves(points: pd.DataFrame, metric: str = "f1") -> pd.DataFrame:
    """Mean held-out ``metric`` over each curve, then its mean and spread over seeds; best first."""
    per_seed = points.groupby(["config", "seed"])[metric].mean()
    table = per_seed.groupby("config").agg(["mean", "std", "count"]).rename(
        columns={"mean": f"mean_{metric}", "std": f"std_{metric}", "count": "seeds"})
    final = points.loc[points.groupby(["config", "seed"])["n_labels"].idxmax()].groupby("config")[metric].agg(["mean", "std"])
    table[f"final_{metric}_mean"], table[f"final_{metric}_std"] = final["mean"], final["std"]
    return table.sort_values(f"mean_{metric}", ascending=False).reset_index()


def verdict(auc: pd.DataFrame, metric: str = "f1", points: pd.DataFrame | None = None) -> str:
    """Plain words on who won, whether the lead is larger than the spread across seeds, and which
    configurations gave identical curves (for a binary model uncertainty, margin and entropy always do)."""
    best, rest = auc.iloc[0], auc.iloc[1:]
    lines = [(f"best by mean held-out {metric} over the curve: {best['config']} "
              f"({best[f'mean_{metric}']:.3f} ± {best[f'std_{metric}']:.3f} over {int(best['seeds'])} seeds)")]
    random_rows = auc[auc["config"].str.startswith("random ")]
    for _, r in random_rows.iterrows():
        if r["config"] != best["config"]:
            lead = best[f"mean_{metric}"] - r[f"mean_{metric}"]
            spread = max(best[f"std_{metric}"], r[f"std_{metric}"])
            lines.append(f"lead over {r['config']}: {lead:+.3f} "
                         + ("(larger than the spread across seeds)" if lead > spread else
                            f"(within the spread across seeds, ±{spread:.3f}: not a clear win)"))
    if len(rest) and best["config"].startswith("random "):
        lines.append("random sampling was not beaten on this set")
    if points is not None:
        curves = points.sort_values(["seed", "n_labels"]).groupby("config", sort=False)[metric].apply(tuple)
        for same in curves.groupby(curves).groups.values():
            if len(same) > 1:
                lines.append("identical curves (same queries every round): " + "; ".join(sorted(same)))
    return "\n".join(lines)


def plot(summary: pd.DataFrame, title: str, metrics=("f1", "accuracy", "roc_auc")) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for config, curve in summary.groupby("config", sort=False):
            mean, std = curve[f"{metric}_mean"], curve[f"{metric}_std"].fillna(0)
            line, = ax.plot(curve["n_labels"], mean, marker="o", ms=3, label=config)
            ax.fill_between(curve["n_labels"], mean - std, mean + std, color=line.get_color(), alpha=0.15)
        ax.set_xlabel("labels used for training")
        ax.set_ylabel(f"held-out {metric} (mean ± 1 sd over seeds)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title)
    return evaluation.png_bytes(fig)
