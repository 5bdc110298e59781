"""The round's model: parameters, class weights when a class is rare, the decision threshold by cross-validation."""

from __future__ import annotations

import numpy as np
import pytest

from skysift.errors import InvalidArgument
from skysift.trainer import experiments as ex
from skysift.trainer.model import (
    cv_threshold,
    f1_at_thresholds,
    limited_threads,
    model_params,
    resolved_class_weight,
)
from tests.trainer_data import SNAD_CSV


def test_class_weights_stay_balanced_when_queries_enrich_the_rare_class():
    # uncertainty queries take a 15 % class to 30-35 % of the labels; the old default (auto) then dropped the
    # weights and the rare class's F1 fell below random's (docs/active-learning.md, snad_rare_real_auto)
    params = model_params({})
    assert params["class_weight"] == "balanced"
    assert resolved_class_weight(params, [1] * 3 + [0] * 27) == "balanced"
    assert resolved_class_weight(params, [1] * 12 + [0] * 18) == "balanced"
    auto = model_params({"class_weight": "auto"})
    assert resolved_class_weight(auto, [1] * 3 + [0] * 27) == "balanced"
    assert resolved_class_weight(auto, [1] * 12 + [0] * 18) is None
    assert resolved_class_weight(model_params({"class_weight": "none"}), [1] * 3 + [0] * 27) is None
    with pytest.raises(InvalidArgument, match="class_weight must be one of auto, balanced, none"):
        model_params({"class_weight": "heavy"})


def test_the_cv_threshold_is_reproducible_and_needs_three_labels_of_each_class():
    data = ex.from_table(SNAD_CSV, label_column="label", id_column="oid")
    rng = np.random.default_rng(0)
    pos, neg = np.flatnonzero(data.y == 1), np.flatnonzero(data.y == 0)
    rows = np.concatenate([rng.choice(pos, 12, replace=False), rng.choice(neg, 108, replace=False)])
    X, y = data.X.iloc[rows].reset_index(drop=True), data.y[rows]
    params = model_params({"class_weight": "none", "max_iter": 30})
    with limited_threads(1):
        t = cv_threshold(X, y, params, seed=0)
        assert t == cv_threshold(X, y, params, seed=0) and 0 < t < 1
        assert cv_threshold(X.iloc[:40], np.r_[np.ones(2, int), np.zeros(38, int)], params, 0) == 0.5  # no 3-fold split


@pytest.mark.parametrize("positives", [0, 1, 12])
def test_f1_at_every_threshold_is_scikit_learns(positives):
    """The threshold search's F1 values, bit for bit (ties between thresholds are decided on them)."""
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(positives)
    y = np.r_[np.ones(positives, int), np.zeros(40, int)]
    scores = np.round(rng.random(len(y)), 2)  # repeated scores: thresholds equal to some of them
    thresholds = np.unique(np.r_[0.0, 0.5, 1.5, scores])
    expected = [f1_score(y, (scores >= t).astype(int), zero_division=0) for t in thresholds]
    assert f1_at_thresholds(y, scores, thresholds).tolist() == expected
