"""What a registered model must carry to be served, and a hierarchical model scored as a pre-order walk.

The estimators are real scikit-learn models fitted on real alerts' features; the ModelVersion objects are
MLflow's own entity class with the tags the trainer writes (the registry round trip is in the integration tests).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from mlflow.entities.model_registry import ModelVersion, ModelVersionTag
from sklearn.ensemble import HistGradientBoostingClassifier

from skysift.errors import FailedPrecondition
from skysift.inference.registry import model_from_version
from skysift.inference.scoring import score_table
from tests.inference_support import fink_batch

TREE = {"Persistent": {"star": {}, "agn": {}}, "Transient": {"sn": {}, "other": {}}}


def kind(cdsxmatch: str | None) -> str:
    """A four-class target from Fink's SIMBAD/TNS cross-match of each real alert."""
    k = cdsxmatch or ""
    if any(s in k for s in ("QSO", "AGN", "Seyfert", "LINER", "Blazar")):
        return "agn"
    if "*" in k or any(s in k for s in ("YSO", "Mira", "RRLyrae", "EclBin", "Cataclys")):
        return "star"
    if "SN" in k or "Supernova" in k:
        return "sn"
    return "other"


@pytest.fixture(scope="module")
def data():
    alerts, features = fink_batch()
    columns = ["ra", "dec", "ndets", "dets_median", "amplitude_g", "amplitude_r", "median_g", "median_r"]
    y = np.array([kind(k) for k in alerts.column("cdsxmatch").to_pylist()])
    X = features.select(columns).to_pandas()
    return alerts, features, columns, HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(X, y)


def version(tag: str, tags: dict) -> ModelVersion:
    return ModelVersion(f"skysift_{tag}", "3", 0, tags=[ModelVersionTag(k, v) for k, v in tags.items()])


def test_hierarchical_model_scores_parents_before_children(data):
    alerts, features, columns, estimator = data
    model = model_from_version("galactic", version("galactic", {
        "feature_set_version": "1", "feature_columns": json.dumps(columns), "taxonomy": json.dumps(TREE),
        "classes": json.dumps(list(estimator.classes_))}), estimator)
    table = score_table(features.append_column("objectId", alerts.column("objectId")), {"galactic": model})
    probs = [c for c in table.column_names if c.startswith("prob_")]
    assert probs == ["prob_Persistent", "prob_star", "prob_agn", "prob_Transient", "prob_sn", "prob_other"]
    persistent = table.column("prob_star").to_numpy() + table.column("prob_agn").to_numpy()
    assert np.allclose(table.column("prob_Persistent").to_numpy(), persistent)
    leaf = estimator.predict_proba(features.select(columns).to_pandas())
    assert np.allclose(table.column("prob_sn").to_numpy(), leaf[:, list(estimator.classes_).index("sn")])


def test_model_without_feature_set_version_is_refused(data):
    _, _, columns, estimator = data
    with pytest.raises(FailedPrecondition, match="no feature_set_version tag"):
        model_from_version("galactic", version("galactic", {"feature_columns": json.dumps(columns)}), estimator)


def test_feature_columns_tag_must_match_the_fitted_columns(data):
    _, _, columns, estimator = data
    with pytest.raises(FailedPrecondition, match="does not match the columns it was fitted on"):
        model_from_version("galactic", version("galactic", {
            "feature_set_version": "1", "feature_columns": json.dumps(columns[::-1]),
            "taxonomy": json.dumps(TREE), "classes": json.dumps(list(estimator.classes_))}), estimator)
