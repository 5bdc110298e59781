"""The catch-up's order of work: a batch that cannot be re-scored holds back itself only, while no model at all
holds back every later batch's predictions (they wait for the first round)."""

from __future__ import annotations

from skysift import pipeline
from skysift.backlog import Behind
from skysift.errors import FailedPrecondition
from skysift.store.keys import parse_batch

KEYS = [f"alerts/survey=ztf/night=20251101/20251101_12000{i}_alerts.parquet" for i in range(1, 4)]


class Stages:
    """The three calls catch_up makes, recording what was scored; ``refuse`` maps a features key to the
    FailedPrecondition its scoring raises."""

    def __init__(self, refuse: dict[str, str]):
        self.refuse, self.scored = refuse, []

    def score(self, features_key: str):
        if features_key in self.refuse:
            raise FailedPrecondition(self.refuse[features_key])
        self.scored.append(features_key)


def features_key(alerts_key: str) -> str:
    return str(parse_batch(alerts_key, "alerts").sibling("features"))


def test_a_batch_the_champion_cannot_rescore_holds_back_only_itself():
    stages = Stages({features_key(KEYS[0]): "model v2 was trained on feature set version 2, but these are 1"})
    report = pipeline.PollReport({}, None)
    pipeline.catch_up(stages, [Behind(k, "ztf", ("predictions",), rescore=True) for k in KEYS], report)
    assert stages.scored == [features_key(k) for k in KEYS[1:]]
    assert "predictions wait: model v2 was trained on feature set version 2" in report.caught_up[0]
    assert all(line.endswith("predictions written") for line in report.caught_up[1:])


def test_no_model_holds_back_every_later_batch():
    stages = Stages({features_key(KEYS[0]): "no model yet: run `skysift round`"})
    report = pipeline.PollReport({}, None)
    pipeline.catch_up(stages, [Behind(k, "ztf", ("predictions",)) for k in KEYS], report)
    assert stages.scored == []
    assert all("predictions wait: no model yet" in line for line in report.caught_up)
