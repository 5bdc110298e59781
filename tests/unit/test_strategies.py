"""Query strategies: scores, ranking by score (not arrival order), seeded tie-breaks, committee disagreement."""

from __future__ import annotations

import numpy as np
import pytest

from skysift.errors import InvalidArgument
from skysift.trainer import strategies


def _proba(p1):
    p1 = np.asarray(p1, dtype=float)
    return np.column_stack([1 - p1, p1])


def test_queue_is_ranked_by_uncertainty_not_by_arrival():
    proba = _proba([0.95, 0.1, 0.52, 0.7, 0.45, 0.99])
    ranked = strategies.query("uncertainty", 3, np.random.default_rng(0), strategies.QueryInput(proba=proba))
    assert ranked.index.tolist() == [2, 4, 3]
    assert ranked.score.tolist() == pytest.approx([0.48, 0.45, 0.30])


@pytest.mark.parametrize("name", ["uncertainty", "margin", "entropy"])
def test_binary_uncertainty_strategies_agree_on_the_order(name):
    rng = np.random.default_rng(1)
    proba = _proba(rng.random(200))
    order = strategies.query(name, 20, np.random.default_rng(0), strategies.QueryInput(proba=proba)).index
    expected = np.argsort(np.abs(proba[:, 1] - 0.5), kind="stable")[:20]
    assert set(order) == set(expected)


def test_scores_at_the_extremes():
    proba = _proba([0.5, 1.0])
    assert strategies.entropy(proba).tolist() == pytest.approx([1.0, 0.0], abs=1e-9)
    assert strategies.margin(proba).tolist() == pytest.approx([1.0, 0.0])
    assert strategies.least_confident(proba).tolist() == pytest.approx([0.5, 0.0])


def test_committee_prefers_where_members_disagree():
    agree = _proba([0.5, 0.5, 0.5])  # an uncertain alert the members agree on
    split = _proba([0.05, 0.95, 0.5])
    members = np.stack([np.stack([agree[i], split[i]]) for i in range(3)])  # (members, n, classes)
    scores = strategies.committee_disagreement(members)
    assert scores[0] == pytest.approx(0.0, abs=1e-9) and scores[1] > 0.3
    assert strategies.query("committee", 1, np.random.default_rng(0),
                            strategies.QueryInput(proba=members.mean(0), member_proba=members)).index.tolist() == [1]


def test_ties_are_broken_by_the_seed_and_reproducibly():
    scores = np.zeros(50)
    a = strategies.top(scores, 10, np.random.default_rng(7))
    b = strategies.top(scores, 10, np.random.default_rng(7))
    c = strategies.top(scores, 10, np.random.default_rng(8))
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist() and a.tolist() != list(range(10))


def test_top_keeps_everything_tied_with_the_cut():
    scores = np.array([0.1, 0.9, 0.5, 0.5, 0.5, 0.2])
    picked = strategies.top(scores, 3, np.random.default_rng(0))
    assert picked[0] == 1 and set(picked[1:]) <= {2, 3, 4}


def test_queue_larger_than_the_pool_returns_the_whole_pool_ranked():
    ranked = strategies.query("entropy", 10, np.random.default_rng(0), strategies.QueryInput(proba=_proba([0.9, 0.5])))
    assert ranked.index.tolist() == [1, 0]


def test_unknown_strategy_is_rejected():
    with pytest.raises(InvalidArgument, match="unknown strategy 'greedy'"):
        strategies.check_strategy("greedy")
    assert strategies.check_strategy("least-confident") == "uncertainty"


def _clusters(rng, centres, per=40, spread=0.05):
    return np.concatenate([rng.normal(c, spread, size=(per, len(c))) for c in centres])


def test_a_diverse_first_batch_takes_one_alert_from_each_cluster():
    rng = np.random.default_rng(0)
    X = _clusters(rng, [(0, 0), (5, 5), (0, 5), (5, 0)])
    ranked = strategies.query("diverse", 4, np.random.default_rng(1), strategies.QueryInput(features=X))
    assert sorted(i // 40 for i in ranked.index) == [0, 1, 2, 3]
    assert all(r.startswith("diverse: ") for r in ranked.reason)


def test_batch_diversity_takes_no_near_duplicates_among_the_uncertain():
    rng = np.random.default_rng(0)
    X = _clusters(rng, [(0, 0), (5, 5), (0, 5)], per=10, spread=0.01)
    p = np.concatenate([np.full(10, 0.50), np.full(10, 0.40), np.full(10, 0.35)])  # cluster 0 is the most uncertain
    q = strategies.QueryInput(proba=_proba(p), features=X)
    plain = strategies.query("uncertainty", 3, np.random.default_rng(0), q)
    diverse = strategies.query("diverse_uncertainty", 3, np.random.default_rng(0), q)
    assert {i // 10 for i in plain.index} == {0}
    assert sorted(i // 10 for i in diverse.index) == [0, 1, 2] and diverse.index[0] // 10 == 0


def test_a_queue_holds_one_alert_per_object_its_most_informative():
    p = [0.5, 0.49, 0.48, 0.1, 0.47]
    objects = np.array(["ZTFa", "ZTFa", "ZTFb", "ZTFc", "ZTFb"], dtype=object)
    ranked = strategies.query("uncertainty", 3, np.random.default_rng(0),
                              strategies.QueryInput(proba=_proba(p), object_ids=objects))
    assert ranked.index.tolist() == [0, 2, 3]


def test_threshold_balanced_splits_the_batch_around_the_decision_threshold():
    p = np.array([0.30, 0.31, 0.32, 0.33, 0.05, 0.9, 0.25, 0.24])  # most near 0.3, a rare side above it
    ranked = strategies.query("balanced", 4, np.random.default_rng(0),
                              strategies.QueryInput(proba=_proba(p), threshold=0.305))
    assert ranked.index.tolist() == [1, 0, 2, 6]  # above, below, above, below: each side nearest the threshold first
    assert ranked.reason[0].startswith("near the decision threshold 0.30 (above)")
    plain = strategies.query("uncertainty", 4, np.random.default_rng(0), strategies.QueryInput(proba=_proba(p)))
    assert sum(p[plain.index] >= 0.305) == 3


def test_density_weighting_prefers_a_dense_uncertain_group_to_an_outlier():
    rng = np.random.default_rng(0)
    X = np.vstack([_clusters(rng, [(0, 0)], per=60, spread=0.1), [[9.0, 9.0]]])
    p = np.concatenate([np.full(60, 0.42), [0.5]])
    q = strategies.QueryInput(proba=_proba(p), features=X)
    assert strategies.query("uncertainty", 1, np.random.default_rng(0), q).index.tolist() == [60]
    assert strategies.query("density", 1, np.random.default_rng(0), q).index.tolist() != [60]


def test_a_new_strategy_is_one_class():
    @strategies.register
    class Brightest(strategies.Strategy):
        name = "test_highest_p"

        def scores(self, q, rng):
            return q.proba[:, 1]

        def why(self, q, i, score):
            return f"highest p {score:.2f}"

    try:
        ranked = strategies.query("test_highest_p", 2, np.random.default_rng(0),
                                  strategies.QueryInput(proba=_proba([0.2, 0.9, 0.6])))
        assert ranked.index.tolist() == [1, 2] and ranked.reason == ["highest p 0.90", "highest p 0.60"]
    finally:
        del strategies.REGISTRY["test_highest_p"]


def test_default_names_a_registered_strategy_that_every_surface_accepts():
    assert strategies.DEFAULT in strategies.REGISTRY and strategies.check_strategy("default") == "default"
    assert strategies.get("default") is strategies.REGISTRY[strategies.DEFAULT]


def test_every_strategy_says_what_it_needs():
    for s in strategies.REGISTRY.values():
        assert s.needs <= {strategies.PROBABILITIES, strategies.COMMITTEE, strategies.FEATURES}, s.name
    assert not strategies.REGISTRY["random"].needs_model and not strategies.REGISTRY["diverse"].needs_model
    assert strategies.REGISTRY["committee"].needs_model


def test_least_confident_margin_and_entropy_rank_three_classes_differently():
    """With two classes the three are one order; with more they differ: a close top two (margin), a flat tail
    (entropy), a low top probability (least-confident) each come first under their own measure."""
    proba = np.array([
        [0.50, 0.48, 0.02],  # a close top two, sure of the third
        [0.40, 0.30, 0.30],  # the lowest top probability
        [0.45, 0.275, 0.275],  # spread
    ])
    assert strategies.margin(proba).argmax() == 0
    assert strategies.least_confident(proba).argmax() == 1
    orders = {name: tuple(np.argsort(-f(proba), kind="stable")) for name, f in
              (("lc", strategies.least_confident), ("margin", strategies.margin), ("entropy", strategies.entropy))}
    assert len(set(orders.values())) >= 2
    two = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    assert len({tuple(np.argsort(-f(two))) for f in (strategies.least_confident, strategies.margin, strategies.entropy)}) == 1


def test_multi_class_reasons_name_the_two_most_probable_classes_and_balanced_is_refused():
    import pandas as pd

    from skysift.trainer.model import fit_and_query

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": np.repeat([0.0, 1.0, 2.0], 10) + rng.normal(0, 0.3, 30), "b": rng.normal(size=30)})
    y = np.repeat([0, 1, 2], 10)
    fitted = fit_and_query(X, y, X, "entropy", 3, {}, 0, rng, 2, "b", classes=("sn", "cv", "agn"))
    assert fitted.pool_proba.shape == (30, 3)
    assert all(r.count("p(") == 2 and any(f"p({c})" in r for c in ("sn", "cv", "agn")) for r in fitted.ranked.reason)
    with pytest.raises(InvalidArgument, match="multi-class"):
        fit_and_query(X, y, X, "balanced", 3, {}, 0, rng, 2, "b", classes=("sn", "cv", "agn"))
