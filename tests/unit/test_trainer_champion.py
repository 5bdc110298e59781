"""The champion rule on models built to be better or worse, through the tracking API a round uses
(:func:`skysift.trainer.tracking.log_round`), on MLflow with a sqlite store of its own: a deliberately worse model
(trained on flipped labels) keeps the champion, a better one (more training rows) moves it, and the F1 each is
judged on is computed here with scikit-learn, not taken from the trainer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from skysift.features.core import FEATURE_COLUMNS
from skysift.modeltags import get_tag
from skysift.trainer import evaluation, tracking
from skysift.trainer.model import fit, limited_threads, model_params
from skysift.trainer.pool import FeatureSpec
from skysift.trainer.settings import TrainerSettings
from tests.trainer_data import fink_alerts_and_features, oracle_table

TAG = get_tag("galactic")
NAME = "unit-champion_galactic"


@pytest.fixture(scope="module")
def split():
    """Real Fink features with their oracle (SIMBAD) targets: 80 held-out rows, the rest for training."""
    features = fink_alerts_and_features()[1].to_pandas().drop_duplicates("candid")
    oracle = oracle_table()
    oracle["target"] = oracle["label"].map(TAG.target)
    rows = features.merge(oracle.dropna(subset=["target"])[["candid", "target"]], on="candid")
    rows = rows.iloc[np.random.default_rng(0).permutation(len(rows))].reset_index(drop=True)
    return rows.iloc[80:], rows.iloc[:80]


def log(uri: str, number: int, model, train: pd.DataFrame, holdout: pd.DataFrame) -> tracking.Tracked:
    y_hold = holdout["target"].to_numpy(int)
    f1 = f1_score(y_hold, model.predict(holdout[FEATURE_COLUMNS]))
    # the round passes every held-out metric (computed once); the one the rule compares is scikit-learn's F1 here
    held_out = {f"holdout_{k}": v for k, v in
                evaluation.metrics(y_hold, model.predict_proba(holdout[FEATURE_COLUMNS])[:, 1]).items()}
    ids = pd.DataFrame({"candid": train["candid"]})
    return tracking.log_round(tracking.RoundLog(
        tracking_uri=uri, settings=TrainerSettings(permutation_repeats=1, mlflow_experiment_prefix="unit-champion"),
        tag=TAG, model_name=NAME, experiment="rule", round=number, strategy="uncertainty", seed=0, batch_size=10,
        initial_batch_size=30, params=model_params(None), spec=FeatureSpec.current(), model=model,
        X_train=train[FEATURE_COLUMNS], y_train=train["target"].to_numpy(int), X_holdout=holdout[FEATURE_COLUMNS],
        y_holdout=y_hold, metrics={**held_out, "holdout_f1": f1}, quality=None, queue=pd.DataFrame({"candid": []}),
        training_ids=ids, holdout_ids=pd.DataFrame({"candid": holdout["candid"]}), message=f"round {number}",
    ))


def champion(uri: str) -> str:
    from mlflow import MlflowClient

    return str(MlflowClient(uri).get_model_version_by_alias(NAME, tracking.CHAMPION).version)


@pytest.fixture
def one_thread():
    """One OpenMP thread, as a round has: spinning threads on a busy machine make each fit many times slower."""
    with limited_threads(1):
        yield


def test_a_worse_model_keeps_the_champion_and_a_better_one_moves_it(split, tmp_path, monkeypatch, one_thread):
    monkeypatch.chdir(tmp_path)  # a sqlite MLflow keeps its artifacts under the working directory
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    train, holdout = split
    X, y = train[FEATURE_COLUMNS], train["target"].to_numpy(int)
    params = model_params(None)
    first = fit(X.iloc[:30], y[:30], params, 0)  # few rows: a modest first champion
    worse = fit(X, 1 - y, params, 0)  # flipped labels: deliberately wrong
    better = fit(X, y, params, 0)
    f1 = {name: f1_score(holdout["target"].to_numpy(int), m.predict(holdout[FEATURE_COLUMNS]))
          for name, m in (("first", first), ("worse", worse), ("better", better))}
    assert f1["worse"] < f1["first"] < f1["better"], f1  # what the models were built to be

    v1 = log(uri, 1, first, train, holdout)
    assert v1.champion_moved and champion(uri) == v1.model_version
    kept = log(uri, 2, worse, train, holdout)
    assert not kept.champion_moved and champion(uri) == v1.model_version, kept.message
    assert kept.metrics["champion_holdout_f1"] == pytest.approx(f1["first"])  # the champion re-scored on these rows
    moved = log(uri, 3, better, train, holdout)
    assert moved.champion_moved and champion(uri) == moved.model_version, moved.message
