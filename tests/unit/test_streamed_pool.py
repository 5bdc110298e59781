"""A streamed pool's queue equals the whole pool's, for every registered strategy, on real feature rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from skysift.trainer import strategies
from skysift.trainer.model import cold_start_query, fit, fit_and_query, fit_committee, model_params
from skysift.trainer.pool import FeatureSpec
from skysift.trainer.streamed import Pool, Scorer, streamed_query
from tests.trainer_data import fink_alerts_and_features, one_thread, oracle_table  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")

SEED, QUEUE, FRAME_ROWS, COMMITTEE = 3, 4, 37, 3


@pytest.fixture(scope="module")
def rows():
    """Fink's feature rows with their objects and oracle labels: 70 labelled for training, the rest the pool."""
    alerts, features = fink_alerts_and_features()
    objects = alerts.select(["candid", "objectId"]).to_pandas().drop_duplicates("candid")
    df = features.to_pandas().drop_duplicates("candid").merge(objects, on="candid")
    labels = oracle_table().drop_duplicates("candid").set_index("candid")["label"]
    df["target"] = df["candid"].map(lambda c: int(labels.get(c) == "galactic") if c in labels.index else -1)
    labelled = df[df["target"] >= 0].sample(frac=1.0, random_state=0)
    train = pd.concat([labelled[labelled["target"] == t].head(35) for t in (0, 1)])
    return train, df[~df["candid"].isin(train["candid"])].reset_index(drop=True)


def _pool(frame: pd.DataFrame, columns: list[str]) -> Pool:
    return Pool(lambda: (frame.iloc[i:i + FRAME_ROWS] for i in range(0, len(frame), FRAME_ROWS)), len(frame), columns)


# a one-split model gives two probabilities: the queue is then decided by the seeded tie breaks
MODELS = {"default": None, "ties": {"max_iter": 1, "max_leaf_nodes": 2}}


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("name", sorted(strategies.REGISTRY))
def test_the_streamed_queue_is_the_whole_pools(rows, name, model):
    train, pool = rows
    columns = list(FeatureSpec.current().columns)
    chosen = strategies.get(name)
    objects = pool["objectId"].to_numpy(dtype=object)
    assert len(set(objects)) < len(objects)  # objects repeat: the one-alert-per-object step is exercised
    whole_rng, streamed_rng = np.random.default_rng([SEED, 1]), np.random.default_rng([SEED, 1])
    params = model_params(MODELS[model])
    if chosen.needs_model:
        whole = fit_and_query(train[columns], train["target"].to_numpy(), pool[columns], name, QUEUE, params, SEED,
                              whole_rng, COMMITTEE, "galactic", objects, tune_threshold=True)
        scorer = Scorer(whole.model, threshold=whole.threshold, positive_class="galactic")
        if strategies.COMMITTEE in chosen.needs:
            scorer.members = fit_committee(train[columns], train["target"].to_numpy(), params, SEED, COMMITTEE)
        whole_ranked = whole.ranked
    else:
        whole_ranked = cold_start_query(pool[columns], name, QUEUE, whole_rng, objects, train[columns])
        scorer = Scorer(model=None if name == "diverse" else fit(train[columns], train["target"], params, SEED))
    streamed = streamed_query(_pool(pool, columns), name, QUEUE, streamed_rng, scorer, train)

    assert len(whole_ranked.index) == QUEUE
    # only candidates were kept (the cold start's k-centre sample is the whole pool when it is this small)
    assert len(streamed.candidates) < len(pool) or name == "diverse" and len(pool) < strategies.COLD_START_SAMPLE
    assert streamed.candidates["position"].to_numpy()[streamed.ranked.index].tolist() == whole_ranked.index.tolist()
    np.testing.assert_allclose(streamed.ranked.score, whole_ranked.score, rtol=1e-12)
    assert streamed.ranked.reason == whole_ranked.reason


def test_a_pool_that_changes_while_it_is_ranked_is_an_error(rows):
    from skysift import errors

    train, pool = rows
    columns = list(FeatureSpec.current().columns)
    grown = Pool(_pool(pool, columns).frames, len(pool) - 1, columns)
    with pytest.raises(errors.FailedPrecondition, match="changed while it was ranked"):
        streamed_query(grown, "uncertainty", QUEUE, np.random.default_rng(0),
                       Scorer(fit(train[columns], train["target"], model_params(None), SEED)))


@pytest.mark.parametrize("name", ["diverse_uncertainty", "density", "diverse"])
def test_a_pool_over_the_standardisation_sample_is_ranked_on_a_seeded_sample(rows, name, monkeypatch):
    """Above STATS_SAMPLE rows the median and spread come from a seeded sample: the queue stays full, one alert
    per object, and the same for the same seed."""
    from skysift.trainer import streamed as streamed_module

    monkeypatch.setattr(streamed_module, "STATS_SAMPLE", 50)
    train, pool = rows
    columns = list(FeatureSpec.current().columns)
    scorer = Scorer(fit(train[columns], train["target"], model_params(None), SEED))
    queues = [streamed_query(_pool(pool, columns), name, QUEUE, np.random.default_rng(SEED), scorer, train)
              for _ in range(2)]
    queued = [q.candidates.iloc[q.ranked.index] for q in queues]
    assert len(queued[0]) == QUEUE and queued[0]["objectId"].is_unique
    assert queued[0]["candid"].tolist() == queued[1]["candid"].tolist()
