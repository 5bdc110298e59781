"""The compiled leaf tables give scikit-learn's probabilities bit for bit, on real feature rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from skysift.trainer.forest import CompiledForest
from skysift.trainer.model import fit, model_params
from skysift.trainer.pool import FeatureSpec
from skysift.trainer.streamed import Scorer
from tests.trainer_data import fink_alerts_and_features, host_class, one_thread, oracle_table  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def labelled():
    """Fink's feature rows (NaN where a band has no light curve) with their oracle answers."""
    _, features = fink_alerts_and_features()
    rows = features.to_pandas().drop_duplicates("candid")
    answers = oracle_table().drop_duplicates("candid").set_index("candid")
    rows = rows[rows["candid"].isin(answers.index)].reset_index(drop=True)
    answers = answers.loc[rows["candid"]]
    columns = list(FeatureSpec.current().columns)
    assert rows[columns].isna().any().any()  # the missing-value branches are exercised
    return rows[columns], (answers["label"] == "galactic").to_numpy(dtype=int), answers.apply(host_class, axis=1)


def _pool(X: pd.DataFrame) -> pd.DataFrame:
    """The rows, and each moved to just above and below every value it holds: rows on and beside thresholds."""
    values = X.to_numpy(dtype=np.float64)
    moved = np.concatenate([values, np.nextafter(values, np.inf), np.nextafter(values, -np.inf)])
    return pd.DataFrame(moved, columns=X.columns)


def _noise(y: np.ndarray) -> np.ndarray:
    """Seeded random answers: trees fitted to them grow as many leaves as they may."""
    return np.random.default_rng(0).integers(0, 2, len(y))


# the default model; one split (two probabilities); up to 60 leaves a tree (64-bit leaf sets)
@pytest.mark.parametrize("params,answers", [(None, None), ({"max_iter": 1, "max_leaf_nodes": 2}, None),
                                            ({"max_leaf_nodes": 60, "min_samples_leaf": 1}, _noise)])
def test_binary_probabilities_are_scikit_learns(labelled, params, answers):
    X, y, _ = labelled
    model = fit(X, answers(y) if answers else y, model_params(params), seed=0)
    forest = CompiledForest.compile(model)
    pool = _pool(X)
    assert forest is not None and (answers is None or forest.width == np.uint64)
    assert np.array_equal(forest.predict_proba(pool.to_numpy()), model.predict_proba(pool))


def test_multiclass_probabilities_are_scikit_learns(labelled):
    X, _, classes = labelled
    y = pd.Categorical(classes).codes
    model = fit(X, y, model_params(None), seed=0)
    assert model.n_trees_per_iteration_ == len(set(classes)) > 2
    pool = _pool(X)
    assert np.array_equal(CompiledForest.compile(model).predict_proba(pool.to_numpy()), model.predict_proba(pool))


def test_a_model_with_more_leaves_than_a_table_holds_is_scored_by_scikit_learn(labelled):
    X, y, _ = labelled
    model = fit(X, _noise(y), model_params({"max_leaf_nodes": 100, "min_samples_leaf": 1}), seed=0)
    assert max(p[0].nodes["is_leaf"].sum() for p in model._predictors) > 64
    assert CompiledForest.compile(model) is None
    q = Scorer(model).query_input(X, None)
    assert np.array_equal(q.proba, model.predict_proba(X))


def test_a_frame_whose_columns_are_not_the_models_is_refused(labelled):
    """The compiled tables take columns by position: a frame in another order would be scored on the wrong features
    without a word (scikit-learn refuses it by name), so the scorer checks the names."""
    X, y, _ = labelled
    model = fit(X, y, model_params(None), seed=0)
    with pytest.raises(ValueError, match="not the model's"):
        Scorer(model).query_input(X[list(reversed(X.columns))], None)
