"""The model a round trains: its hyper-parameters (checked), the fit, the committee and the decision threshold.

The default model is scikit-learn's HistGradientBoosting: NaN features are handled natively, which alert
features need (a band without detections, ``ebv`` before enrichment).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from skysift import errors
from skysift.trainer import selection, strategies
from skysift.trainer.streamed import Scorer

DEFAULT_PARAMS = {"learning_rate": 0.1, "max_iter": 100, "l2_regularization": 10.0, "min_samples_leaf": 5,
                  "max_leaf_nodes": 31, "class_weight": "balanced"}
# min_samples_leaf=5 rather than scikit-learn's 20: with the 30-label first batch, 20 allows one split at most.
PARAM_TYPES = {"learning_rate": float, "max_iter": int, "l2_regularization": float, "min_samples_leaf": int,
               "max_leaf_nodes": int, "class_weight": str}
PARAM_LIMITS = {"max_iter": 5000, "learning_rate": 10.0, "max_leaf_nodes": 4096, "min_samples_leaf": 100_000}
PARAM_ALIASES = {"l2": "l2_regularization", "iterations": "max_iter", "lr": "learning_rate"}
CLASS_WEIGHTS = ("auto", "balanced", "none")
# "auto": balanced class weights when the minority class is under this share of the training labels. Not the
# default: uncertainty queries enrich a rare class (15 % of the pool, 30-35 % of the labels after 100), auto then
# drops the weights, the model predicts the rare class less often at 0.5 and its F1 fell below random's
# (docs/active-learning.md, snad_rare_real_auto). "balanced" keeps the weights however the queries shift the mix.
RARE_CLASS_FRACTION = 0.2


def model_params(params: dict | None) -> dict:
    """Hyper-parameters with defaults; accepts strings (from gRPC/CLI) and rejects unknown names."""
    out = dict(DEFAULT_PARAMS)
    for raw_name, value in (params or {}).items():
        name = PARAM_ALIASES.get(raw_name, raw_name)
        if name not in PARAM_TYPES:
            raise errors.InvalidArgument(f"unknown model parameter {raw_name!r}; expected one of {', '.join(PARAM_TYPES)}")
        if name == "class_weight":
            out[name] = _class_weight(value)
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


def _class_weight(value) -> str | None:
    text = "none" if value is None else str(value).strip().lower() or "none"
    if text not in CLASS_WEIGHTS:
        raise errors.InvalidArgument(f"class_weight must be one of {', '.join(CLASS_WEIGHTS)}, got {value!r}")
    return None if text == "none" else text


def resolved_class_weight(params: dict, y) -> str | None:
    """``auto`` becomes ``balanced`` when a class is rare in ``y`` (under RARE_CLASS_FRACTION), else none."""
    if params.get("class_weight") != "auto":
        return params.get("class_weight")
    y = np.asarray(y, dtype=int)
    minority = np.bincount(y).min() / len(y) if len(y) else 0.5  # (a class between present ones counts as 0)
    return "balanced" if minority < RARE_CLASS_FRACTION else None


def fit(X: pd.DataFrame, y: np.ndarray, params: dict, seed: int):
    """Fit the default model on ``X``/``y`` (see the module doc).

    A column that is NaN on every training row (e.g. ``ebv`` before enrichment ran) makes scikit-learn's
    binning fail; it is fitted as a constant 0 instead: a constant column gets no split, so the model ignores
    it and later values in it change nothing.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    empty = X.columns[X.isna().all(axis=0)]
    if len(empty):
        X = X.assign(**{c: 0.0 for c in empty})
    y = np.asarray(y, dtype=int)
    params = {**params, "class_weight": resolved_class_weight(params, y)}
    model = HistGradientBoostingClassifier(random_state=seed, early_stopping=False, **params)
    return model.fit(X, y)


def fit_committee(X: pd.DataFrame, y: np.ndarray, params: dict, seed: int, size: int) -> list:
    """A bagged ensemble for query by committee: each member sees a bootstrap drawn within each class,
    so that every member has every class even when one of them has only a few labels."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y, dtype=int)
    by_class = [np.flatnonzero(y == c) for c in np.unique(y)]
    members = []
    for i in range(size):
        idx = np.concatenate([rng.choice(ix, size=len(ix), replace=True) for ix in by_class])
        members.append(fit(X.iloc[idx], y[idx], params, seed + 1 + i))
    return members


def cv_threshold(X: pd.DataFrame, y, params: dict, seed: int, folds: int = 3) -> float:
    """The decision threshold that maximises F1 on out-of-fold predictions of the training labels.

    With few labels of the rare class the model's probabilities are rarely calibrated around 0.5; choosing
    the threshold on held-back training rows (never on the held-out set) corrects for that. 0.5 when a class
    has fewer than ``folds`` labels (no stratified split exists).
    """
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y, dtype=int)
    if len(y) == 0 or y.max() > 1 or min(int(y.sum()), int(len(y) - y.sum())) < folds:
        return 0.5  # (a multi-class model decides by its most probable class: no threshold)
    oof = np.empty(len(y))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
        oof[test] = fit(X.iloc[train], y[train], params, seed).predict_proba(X.iloc[test])[:, 1]
    candidates = np.unique(np.concatenate([[0.5], np.clip(oof, 0.01, 0.99)]))
    f1 = f1_at_thresholds(y, oof, candidates)
    best = np.flatnonzero(np.isclose(f1, f1.max()))
    return float(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]])  # ties: the one nearest 0.5


def f1_at_thresholds(y: np.ndarray, scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """F1 of predicting ``scores >= t`` for each threshold, as scikit-learn's ``f1_score`` computes it
    (2 tp / (positives + predicted), 0 when both are 0), from counts in sorted scores: one call per threshold
    took ~3 s of a round (250 thresholds, ~12 ms each in input checks)."""
    every, positives = np.sort(scores), np.sort(scores[y == 1])
    predicted = len(every) - np.searchsorted(every, thresholds, side="left")
    tp = len(positives) - np.searchsorted(positives, thresholds, side="left")
    denominator = (len(positives) + predicted).astype(np.float64)
    return np.divide(2.0 * tp, denominator, out=np.zeros(len(thresholds)), where=denominator > 0)


def can_fit(y, n_classes: int = 2) -> bool:
    """Every class has a label: a model fitted on fewer would predict fewer columns than its tag has classes."""
    y = np.asarray(y)
    return len(y) > 0 and len(np.unique(y)) == n_classes


def limited_threads(n: int):
    """Cap scikit-learn's OpenMP threads (see ``TrainerSettings.threads``).

    threadpoolctl only limits libraries already loaded, and scikit-learn loads its OpenMP runtime with the
    estimator modules, so import them first: without that the cap silently did nothing (4.4 s vs 0.06 s a fit).
    """
    import sklearn.ensemble  # noqa: F401 - loads the OpenMP runtime so that the limit applies to it
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n)


@dataclass
class Fitted:
    model: object
    ranked: strategies.Ranked
    pool_proba: np.ndarray
    threshold: float = 0.5


def fit_and_query(X_train: pd.DataFrame, y_train, X_pool: pd.DataFrame, strategy: str, n: int, params: dict,
                  seed: int, rng: np.random.Generator, committee_size: int, positive_class: str,
                  object_ids: np.ndarray | None = None, tune_threshold: bool = False,
                  classes: tuple[str, ...] = ()) -> Fitted:
    """Fit on the training set, score the pool and rank it: the shared core of rounds and experiments.

    Only what the strategy needs is computed (a committee's fits, the standardised features).
    """
    scorer = fit_scorer(X_train, y_train, strategy, params, seed, committee_size if len(X_pool) and n > 0 else 0,
                        positive_class, tune_threshold, classes)
    q = (scorer.query_input(X_pool, object_ids) if len(X_pool) else
         strategies.QueryInput(proba=np.empty((0, len(scorer.model.classes_))), object_ids=object_ids))
    if strategies.FEATURES in strategies.get(strategy).needs:
        q.features, q.labelled_features = selection.standardise(X_pool.to_numpy(), X_train.to_numpy())
    return Fitted(scorer.model, strategies.query(strategy, n, rng, q), q.proba, scorer.threshold)


def fit_scorer(X_train: pd.DataFrame, y_train, strategy: str, params: dict, seed: int, committee_size: int,
               positive_class: str, tune_threshold: bool = False, classes: tuple[str, ...] = ()) -> Scorer:
    """The fitted model, its threshold and (for a committee strategy) the committee, ready to score a pool."""
    model = fit(X_train, y_train, params, seed)
    chosen = strategies.get(strategy)
    if len(model.classes_) > 2 and chosen.binary_only:
        raise errors.InvalidArgument(f"strategy {strategy!r} ranks around a binary model's threshold; a multi-class "
                                     "model takes uncertainty, margin, entropy, committee, diverse_uncertainty, ...")
    threshold = cv_threshold(X_train, y_train, params, seed) if tune_threshold else 0.5
    members = (fit_committee(X_train, y_train, params, seed, committee_size)
               if strategies.COMMITTEE in chosen.needs and committee_size else None)
    return Scorer(model, members, threshold, positive_class, classes)


def cold_start_strategy(strategy: str) -> strategies.Strategy:
    """``strategy``, which must need no model: it picks a batch while no model can be fitted."""
    chosen = strategies.get(strategy)
    if chosen.needs_model:
        raise errors.InvalidArgument(f"strategy {strategy!r} needs a model; a first batch can be "
                                     f"{', '.join(s.name for s in strategies.REGISTRY.values() if not s.needs_model)}")
    return chosen


def cold_start_query(X_pool: pd.DataFrame, strategy: str, n: int, rng: np.random.Generator,
                     object_ids: np.ndarray | None = None, X_labelled: pd.DataFrame | None = None) -> strategies.Ranked:
    """The batch asked for while no model can be fitted, by a strategy that needs none (random, diverse)."""
    chosen = cold_start_strategy(strategy)
    q = strategies.QueryInput(object_ids=object_ids, proba=None)
    if strategies.FEATURES in chosen.needs:
        labelled = X_labelled.to_numpy() if X_labelled is not None else np.empty((0, X_pool.shape[1]))
        q.features, q.labelled_features = selection.standardise(X_pool.to_numpy(), labelled)
    elif object_ids is None:
        q.object_ids = np.full(len(X_pool), "", dtype=object)  # only the pool's size matters to random
    return strategies.query(strategy, n, rng, q)
