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
    ranked = strategies.query("uncertainty", 3, np.random.default_rng(0), proba=proba)
    assert ranked.index.tolist() == [2, 4, 3]
    assert ranked.score.tolist() == pytest.approx([0.48, 0.45, 0.30])


@pytest.mark.parametrize("name", ["uncertainty", "margin", "entropy"])
def test_binary_uncertainty_strategies_agree_on_the_order(name):
    rng = np.random.default_rng(1)
    proba = _proba(rng.random(200))
    order = strategies.query(name, 20, np.random.default_rng(0), proba=proba).index
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
    assert strategies.query("committee", 1, np.random.default_rng(0), proba=members.mean(0), member_proba=members).index.tolist() == [1]


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
    ranked = strategies.query("entropy", 10, np.random.default_rng(0), proba=_proba([0.9, 0.5]))
    assert ranked.index.tolist() == [1, 0]


def test_unknown_strategy_is_rejected():
    with pytest.raises(InvalidArgument, match="unknown strategy 'greedy'"):
        strategies.check_strategy("greedy")
    assert strategies.check_strategy("least-confident") == "uncertainty"
