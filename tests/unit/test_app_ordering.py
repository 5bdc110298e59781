"""The orders the label page offers (queue rank, retrained model's uncertainty, random) and the champion's
uncertainty of one prediction."""

import pytest

from skysift.app.champion import uncertainty
from skysift.app.labelling import ordered
from skysift.app.trainer import QueueItem
from skysift.errors import InvalidArgument


def items(n: int = 8) -> list[QueueItem]:
    """Queue items in a shuffled list (rank r has candid 100 + r), as a queue file may hold them."""
    ranks = [5, 2, 8, 1, 7, 3, 6, 4][:n]
    return [QueueItem(100 + r, f"ZTF{r}", r, 0.0, float("nan"), "uncertainty", "", "k") for r in ranks]


def candids(seq) -> list[int]:
    return [i.candid for i in seq]


def test_queue_order_is_the_rank():
    assert candids(ordered(items(), "queue")) == list(range(101, 109))


def test_random_order_is_fixed_by_the_seed_and_a_permutation():
    first = candids(ordered(items(), "random", seed=7))
    assert candids(ordered(items(), "random", seed=7)) == first  # a rerun sees the same order
    assert candids(ordered(list(reversed(items())), "random", seed=7)) == first  # whatever order items came in
    assert sorted(first) == list(range(101, 109))
    assert {tuple(candids(ordered(items(), "random", seed=s))) for s in range(5)} != {tuple(first)}


def test_retrained_order_is_most_uncertain_first_and_unscored_last():
    scores = {103: 0.1, 106: 0.45, 101: 0.45, 108: 0.3}
    # ties keep rank order; 102, 104, 105, 107 have no score and follow in rank order
    assert candids(ordered(items(), "retrained", uncertainty=scores)) == [101, 106, 108, 103, 102, 104, 105, 107]


def test_unknown_order_is_refused():
    with pytest.raises(InvalidArgument, match="unknown sort 'nonesuch'"):
        ordered(items(), "nonesuch")


def test_uncertainty_is_least_confidence_over_top_level_classes():
    assert uncertainty({"not_galactic": 0.3, "galactic": 0.7}, {"not_galactic": "", "galactic": ""}) == pytest.approx(0.3)
    # a hierarchy: children repeat their parent's mass and are not counted again
    tree = {"SN": 0.6, "SN Ia": 0.5, "SN II": 0.1, "AGN": 0.4}
    parents = {"SN": "", "SN Ia": "SN", "SN II": "SN", "AGN": ""}
    assert uncertainty(tree, parents) == pytest.approx(0.4)
