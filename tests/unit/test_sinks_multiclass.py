"""Slack on a multi-class model of a team's taxonomy file: every class is news (a binary model's negative class
is not), so the first class of a multi-class model is reported too."""

from __future__ import annotations

import numpy as np
import pytest

from skysift import modeltags
from skysift.inference import taxonomy as tx
from skysift.inference.registry import LoadedModel
from skysift.inference.scoring import score_table
from skysift.inference.sinks import Scored
from skysift.inference.sinks.slack import hits
from skysift.trainer.oracle import clean_type
from tests.inference_support import fink_batch
from tests.trainer_data import MULTICLASS_TAXONOMY as TAXONOMY


@pytest.fixture
def team_file(tmp_path, monkeypatch):
    path = tmp_path / "team.yaml"
    path.write_text(TAXONOMY)
    monkeypatch.setenv("SKYSIFT_TAXONOMY_FILE", str(path))
    modeltags.vocabulary.cache_clear()
    yield modeltags.get_tag("hostclass")
    modeltags.vocabulary.cache_clear()


def test_slack_reports_every_class_of_a_multi_class_model(team_file):
    from sklearn.ensemble import HistGradientBoostingClassifier

    alerts, features = fink_batch()
    kinds = [clean_type(k)[1] for k in alerts.column("cdsxmatch").to_pylist()]
    # the alerts' own SIMBAD types in three of the tag's classes (a fourth would need more labelled types)
    y = np.array([0 if k == "Supernova" else 3 if k in ("Galaxy", "QSO", "AGN") else 2 for k in kinds])
    X = np.column_stack([features.column(c).to_numpy(zero_copy_only=False) for c in ("ndets", "drb", "median_r")])
    classes = tuple(team_file.classes[i] for i in np.unique(y))
    estimator = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(X, y)
    model = LoadedModel("hostclass", "t_hostclass", "1", "1", ("ndets", "drb", "median_r"),
                        tx.from_tree({"Extragalactic": {"sn": {}, "galaxy": {}}, "Galactic": {"varstar": {}}},
                                     list(classes)), estimator)
    table = features.select(["candid", "ndets", "drb", "median_r"]).append_column("objectId", alerts.column("objectId"))
    scored = Scored(score_table(table, {"hostclass": model}), {"hostclass": model}, None)
    found = hits(scored, 0.0)
    assert {label for *_, (label, _) in found} >= {"sn"}  # classes[0]: a binary model's negative, never reported
    assert {label for *_, (label, _) in found} <= set(classes)
