"""Experiments without a human: replay a labelled set with an oracle to compare strategies and settings.

For each seed the labelled set is split once into a held-out part (stratified, ``holdout_fraction``) and a
pool. The first batch is then drawn from the pool by a generator of its own (seeded, independent of the split:
an earlier version took it from the hash order that also made the split, and its class mix varied 3-4 times
more than chance). Every configuration (strategy, first-batch rule, batch sizes, learning rate, class weight,
decision threshold) starts from that seed's split and, for a random first batch, the same first batch, so
configurations are compared on identical data and the comparison can be paired by seed. Each round fits,
evaluates on the held-out part, queries ``batch_size`` more with the strategy and reveals their oracle labels,
until ``max_labels``. The fit, query and metrics are the very functions a production round uses
(:func:`skysift.trainer.model.fit_and_query`, :mod:`.evaluation`). The statistics are in :mod:`.comparison`.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from skysift import errors
from skysift.modeltags import get_tag
from skysift.trainer import evaluation, strategies
from skysift.trainer.model import can_fit, cold_start_query, cv_threshold, fit, fit_and_query, limited_threads, model_params

CURVE_METRICS = ("f1", "f1_negative", "f1_macro", "accuracy", "precision", "recall", "roc_auc", "pr_auc")
CEILING = "all labels"


@dataclass
class LabelledSet:
    """Features and 0/1 targets of labelled examples (the oracle's answers)."""

    name: str
    X: pd.DataFrame
    y: np.ndarray
    ids: np.ndarray
    classes: tuple[str, str]
    feature_set_version: str = ""
    objects: np.ndarray | None = None  # object of each row: a batch then holds one alert per object
    notes: list[str] = field(default_factory=list)  # what loading left out, and why

    def describe(self) -> str:
        pos = int(self.y.sum())
        return (f"{self.name}: {len(self.y)} labelled ({self.classes[1]} {pos}, {self.classes[0]} {len(self.y) - pos}), "
                f"{self.X.shape[1]} features")


def alert_features(paths: list[Path]):
    """(feature rows with candid and objectId, the feature set) of alert files (Avro containers or parquet):
    decode → enrich → features, the one stage chain. Enrichment is a production round's without Lasair: E(B-V)
    from the offline map and the offline catalogues' context (when installed)."""
    from skysift.alerts.decode import Packet
    from skysift.chain import features_of_packets
    from skysift.enrichment.core import Enricher, enrich
    from skysift.features.sets import configured

    files = sorted({f for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.suffix in (".avro", ".parquet")})
    if not files:
        raise errors.InvalidArgument(f"no .avro or .parquet alert files under {', '.join(map(str, paths))}")
    feature_set = configured()
    enricher = Enricher(None)  # a production round's enrichment without Lasair: E(B-V), offline catalogues
    chained = features_of_packets([Packet(f.read_bytes(), source=str(f)) for f in files], feature_set=feature_set,
                                  enrich=lambda survey, alerts: enrich(alerts, None, enricher.extinction,
                                                                       enricher.catalogs))
    if not chained.surveys:
        raise errors.InvalidArgument(f"no alert decoded from {len(files)} files")
    features = pd.concat([part.features.to_pandas().assign(objectId=part.alerts.column("objectId").to_pylist())
                          for part in chained.surveys])
    return features.drop_duplicates("candid", keep="last").reset_index(drop=True), feature_set


def from_alerts(paths: list[Path], labels_csv: Path, model_tag: str = "galactic") -> LabelledSet:
    """Alert files with Fink's SIMBAD types as oracle: :func:`alert_features` joined with the labels."""
    from skysift.trainer.oracle import left_out, oracle_labels

    features, feature_set = alert_features(paths)
    raw = pd.read_csv(labels_csv)
    labels = oracle_labels(raw)
    tag = get_tag(model_tag)
    labels["target"] = labels["label"].map(tag.target)
    joined = features.merge(labels.dropna(subset=["target"]).drop(columns="objectId"), on="candid")
    uninformative, not_mapped = left_out(raw[raw["candid"].isin(features["candid"])])
    notes = [f"oracle: {sum(counts.values())} alerts left out, {what}: "
             + (", ".join(f"{name} ({n})" for name, n in counts.most_common()) or "none")
             for what, counts in (("types that say nothing of the class", uninformative),
                                  ("types not mapped to a class", not_mapped))]
    return LabelledSet(f"alerts+oracle ({labels_csv.name})", joined[feature_set.columns].reset_index(drop=True),
                       joined["target"].to_numpy(dtype=int), joined["candid"].to_numpy(), tag.classes,
                       feature_set.version, joined["objectId"].to_numpy(dtype=object), notes)


def from_variable_star_catalogues(paths: list[Path]) -> LabelledSet:
    """Alert files labelled by position: on a known variable star (VSX or GCVS within Fink's 1.5 arcsec) or not.

    A second oracle on real alerts, independent of SIMBAD. The catalogue's own context columns (``varstar_*``,
    in feature set 2) are left out of the features: they would hold the answer.
    """
    from skysift.enrichment.catalogs import VARSTAR_RADIUS_ARCSEC, load_catalogs

    catalogs = load_catalogs()
    if catalogs is None:
        raise errors.FailedPrecondition("the variable-star catalogues are not installed: run `make catalogs`")
    features, feature_set = alert_features(paths)
    matched = catalogs.match(features["ra"].to_numpy(float), features["dec"].to_numpy(float), 1.0, VARSTAR_RADIUS_ARCSEC)
    target = matched["varstar_catalogue"].is_valid().to_numpy(zero_copy_only=False).astype(int)
    columns = [c for c in feature_set.columns if not c.startswith("varstar")]
    return LabelledSet(f"alerts labelled by VSX/GCVS position ({catalogs.source})", features[columns],
                       target, features["candid"].to_numpy(), ("not_catalogued", "known_variable_star"),
                       feature_set.version, features["objectId"].to_numpy(dtype=object),
                       [f"left out of the features (they hold the label): {', '.join(sorted(set(feature_set.columns) - set(columns)))}"]
                       if len(columns) < len(feature_set.columns) else [])


def from_table(path: Path, label_column: str = "label", id_column: str | None = None,
               classes: tuple[str, str] = ("negative", "positive")) -> LabelledSet:
    """A labelled feature table (CSV or parquet): every numeric or boolean column except the id and label is
    a feature (a boolean is 0/1); other columns are named in the notes."""
    table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    for column in (label_column, id_column):
        if column and column not in table:
            raise errors.InvalidArgument(f"{path}: no column {column!r}; columns: {', '.join(map(str, table.columns[:10]))}...")
    y = table[label_column].map(lambda v: int(v) if isinstance(v, (bool, np.bool_)) else v)
    if set(y.dropna().unique()) - {0, 1}:
        raise errors.InvalidArgument(f"{path}: label column {label_column!r} must hold 0/1 (or true/false)")
    table, y = table[y.notna()], y[y.notna()]
    ids = table[id_column].to_numpy() if id_column else np.arange(len(table))
    rest = table.drop(columns=[c for c in (label_column, id_column) if c])
    X = rest.select_dtypes(["number", "bool"]).astype("float64")
    notes = [f"{path.name}: columns left out (neither numeric nor boolean): {', '.join(skipped)}"
             for skipped in [[str(c) for c in rest.columns if c not in X.columns]] if skipped]
    return LabelledSet(path.name, X.reset_index(drop=True), y.to_numpy(dtype=int), ids, classes, notes=notes)


def from_store(store, model_tag: str) -> LabelledSet:
    """The store's own labels on its stored features: replay what humans labelled."""
    from skysift.trainer.labels import LabelStore
    from skysift.trainer.pool import FeatureSpec, load_pool

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
    class_weight: str = "balanced"
    initial: str = "random"  # the first batch: random, or diverse (k-centre on the features)
    threshold: str = "0.5"  # the decision threshold: 0.5, or cv (chosen for F1 on the training labels)
    # a round queries max(batch_size, batch_growth x labels so far): long curves (to 20 % of a large pool) in
    # fewer rounds, with the early rounds, where strategies differ most, as fine as batch_size
    batch_growth: float = 0.0

    @property
    def label(self) -> str:
        return (f"{self.strategy} init={self.initial_batch_size}{'' if self.initial == 'random' else ' ' + self.initial} "
                f"+{self.batch_size}{f' grow={self.batch_growth:g}' if self.batch_growth else ''} "
                f"lr={self.learning_rate:g} cw={self.class_weight} t={self.threshold}")

    def next_batch(self, n_labels: int) -> int:
        return max(self.batch_size, int(self.batch_growth * n_labels))

    @property
    def baseline(self) -> Config:
        """The random configuration this one is paired with: the same settings, random queries."""
        return Config("random", self.initial_batch_size, self.batch_size, self.learning_rate, self.class_weight,
                      "random", self.threshold, self.batch_growth)

    @staticmethod
    def of_points(points: pd.DataFrame) -> dict[str, Config]:
        """The configurations of saved points, by label (points saved before a field existed take its default)."""
        return {r["config"]: Config(**{k: r[k] for k in Config.__dataclass_fields__ if k in r})
                for _, r in points.drop_duplicates("config").iterrows()}


def grid(strategy_names, initial_sizes=(30,), batch_sizes=(10,), learning_rates=(0.1,), class_weights=("balanced",),
         initials=("random",), thresholds=("0.5",), batch_growth: float = 0.0) -> list[Config]:
    for initial in initials:
        if initial not in ("random", "diverse"):
            raise errors.InvalidArgument(f"the first batch is random or diverse, not {initial!r}")
    for threshold in thresholds:
        if threshold not in ("0.5", "cv"):
            raise errors.InvalidArgument(f"the threshold is 0.5 or cv, not {threshold!r}")
    for cw in class_weights:
        model_params({"class_weight": cw})
    names = [strategies.check_strategy(s) for s in strategy_names]
    if not 0 <= batch_growth <= 1:
        raise errors.InvalidArgument(f"batch growth is a share of the labels so far in [0, 1], not {batch_growth}")
    return [Config(s, int(i), int(b), float(lr), str(cw), initial, threshold, float(batch_growth))
            for s, i, b, lr, cw, initial, threshold in itertools.product(
                names, initial_sizes, batch_sizes, learning_rates, class_weights, initials, thresholds)]


def split(data: LabelledSet, seed: int, holdout_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(held-out rows, pool rows) of a seed: stratified, as a production round's split."""
    # by row position: ids may be text (a table's object names)
    held = evaluation.assign_holdout(dict(enumerate(data.y.tolist())), {}, Counter(data.y.tolist()), holdout_fraction, seed)
    held = np.array(sorted(held), dtype=int)
    return held, np.setdiff1d(np.arange(len(data.y)), held)


def first_batch(data: LabelledSet, pool: np.ndarray, size: int, seed: int, rule: str = "random") -> np.ndarray:
    """The first batch's rows: a seeded draw from the pool with a generator of its own (not the split's order),
    or, for ``diverse``, k-centre on the standardised features."""
    rng = np.random.default_rng([seed, 101])
    if rule == "random":
        return rng.choice(pool, size=min(size, len(pool)), replace=False)
    objects = None if data.objects is None else data.objects[pool]
    return pool[cold_start_query(data.X.iloc[pool], "diverse", size, rng, objects).index]


def simulate(data: LabelledSet, config: Config, seed: int, max_labels: int, holdout_fraction: float = 0.3,
             base_params: dict | None = None, committee_size: int = 5, threads: int = 1) -> list[dict]:
    """One learning curve: a point per round with the number of labels and the held-out metrics."""
    with limited_threads(threads):  # see TrainerSettings.threads
        return _simulate(data, config, seed, max_labels, holdout_fraction, base_params, committee_size)


def _simulate(data, config, seed, max_labels, holdout_fraction, base_params, committee_size) -> list[dict]:
    held, pool = split(data, seed, holdout_fraction)
    params = model_params({**(base_params or {}), "learning_rate": config.learning_rate,
                           "class_weight": config.class_weight})
    labelled = list(first_batch(data, pool, config.initial_batch_size, seed, config.initial))
    unlabelled = np.setdiff1d(pool, labelled)
    rng = np.random.default_rng([seed, 1])
    tune = config.threshold == "cv"
    points = []
    for round_number in itertools.count():
        y_train = data.y[labelled]
        n = min(config.next_batch(len(labelled)), max_labels - len(labelled), len(unlabelled))
        objects = None if data.objects is None else data.objects[unlabelled]
        if can_fit(y_train):
            fitted = fit_and_query(data.X.iloc[labelled], y_train, data.X.iloc[unlabelled], config.strategy, n,
                                   params, seed, rng, committee_size, data.classes[1], objects, tune)
            m = evaluation.metrics(data.y[held], fitted.model.predict_proba(data.X.iloc[held])[:, 1], fitted.threshold)
            picked, threshold = fitted.ranked.index, fitted.threshold
        else:  # one class so far: nothing to fit, keep sampling at random (the point has no metrics)
            m, threshold = {}, math.nan
            picked = rng.permutation(len(unlabelled))[:max(n, 0)]
        points.append({**asdict(config), "config": config.label, "seed": seed, "round": round_number,
                       "n_labels": len(labelled), "train_positive_fraction": float(y_train.mean()),
                       "threshold_used": threshold, **{k: m.get(k, np.nan) for k in CURVE_METRICS}})
        if n <= 0:
            return points
        labelled.extend(unlabelled[picked].tolist())
        unlabelled = np.delete(unlabelled, picked)


def ceiling(data: LabelledSet, seed: int, holdout_fraction: float, config: Config, base_params: dict | None = None
            ) -> dict:
    """The held-out metrics of a model trained on every pool label: the best a curve can hope to reach."""
    held, pool = split(data, seed, holdout_fraction)
    params = model_params({**(base_params or {}), "learning_rate": config.learning_rate,
                           "class_weight": config.class_weight})
    X, y = data.X.iloc[pool], data.y[pool]
    threshold = cv_threshold(X, y, params, seed) if config.threshold == "cv" else 0.5
    m = evaluation.metrics(data.y[held], fit(X, y, params, seed).predict_proba(data.X.iloc[held])[:, 1], threshold)
    return {"config": CEILING, "seed": seed, "n_labels": len(pool), **{k: m.get(k, np.nan) for k in CURVE_METRICS}}


@dataclass
class Results:
    points: pd.DataFrame
    ceiling: pd.DataFrame
    max_labels: int
    notes: list[str]


def run(data: LabelledSet, configs: list[Config], seeds: list[int], max_labels: int, holdout_fraction: float = 0.3,
        base_params: dict | None = None, progress: Callable[[int], None] | None = None, threads: int = 1,
        checkpoint: Path | None = None) -> Results:
    """Every configuration over every seed, and each seed's ceiling.

    ``max_labels`` beyond the pool is clamped to the pool (said in the notes); ``checkpoint`` is rewritten
    with every point so far as each curve finishes, so an interrupted run keeps what it measured.
    ``progress`` is called with 1 after each curve.
    """
    if len(data.y) < 10 or len(np.unique(data.y)) < 2:
        raise errors.FailedPrecondition(f"{data.describe()}: need at least 10 labelled examples of both classes")
    notes = list(data.notes)
    n_pool = min(len(split(data, s, holdout_fraction)[1]) for s in seeds)
    if max_labels > n_pool:
        notes.append(f"max_labels {max_labels} is more than the pool ({n_pool} after holding out "
                     f"{holdout_fraction:.0%}): clamped to {n_pool}")
        max_labels = n_pool
    rows = []
    with limited_threads(threads):
        ceilings = pd.DataFrame([ceiling(data, s, holdout_fraction, configs[0], base_params) for s in seeds])
    for config in configs:
        for seed in seeds:
            rows.extend(simulate(data, config, seed, max_labels, holdout_fraction, base_params, threads=threads))
            if checkpoint is not None:
                checkpoint.parent.mkdir(parents=True, exist_ok=True)
                pd.DataFrame(rows).to_csv(checkpoint, index=False)
            if progress:
                progress(1)
    return Results(pd.DataFrame(rows), ceilings, max_labels, notes)
