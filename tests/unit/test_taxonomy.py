"""Taxonomies: a model's leaf probabilities reported as a pre-order walk, parents before children."""

import numpy as np
import pytest

from skysift.errors import InvalidArgument
from skysift.inference import taxonomy as tx

ORACLE = {
    "Persistent": {"AGN": {}, "CV": {}, "Varstar": {}},
    "Transient": {"SN Ia": {}, "SN II": {}, "SN Ib/c": {}, "SLSN": {}},
}
LEAVES = ["SN Ia", "AGN", "SN II", "CV", "SN Ib/c", "Varstar", "SLSN"]  # a model's own class order


def test_oracle_tree_walks_parents_before_children():
    t = tx.from_tree(ORACLE, LEAVES)
    assert [(n.label, n.parent) for n in t.nodes] == [
        ("Persistent", ""), ("AGN", "Persistent"), ("CV", "Persistent"), ("Varstar", "Persistent"),
        ("Transient", ""), ("SN Ia", "Transient"), ("SN II", "Transient"), ("SN Ib/c", "Transient"),
        ("SLSN", "Transient"),
    ]


def test_parent_probability_is_the_sum_of_its_leaves():
    t = tx.from_tree(ORACLE, LEAVES)
    leaf = np.array([[0.05, 0.30, 0.10, 0.20, 0.05, 0.25, 0.05]])  # in LEAVES order
    p = dict(zip([n.label for n in t.nodes], t.node_probabilities(leaf)[0]))
    assert p["Persistent"] == pytest.approx(0.75)
    assert p["Transient"] == pytest.approx(0.25)
    assert p["AGN"] == pytest.approx(0.30) and p["SN Ib/c"] == pytest.approx(0.05)


def test_binary_model_is_a_flat_tree_in_predict_proba_order():
    t = tx.flat(("not_galactic", "galactic"))
    assert [(n.label, n.parent, n.column) for n in t.nodes] == [
        ("not_galactic", "", "prob_not_galactic"), ("galactic", "", "prob_galactic")]
    assert t.node_probabilities(np.array([[0.2, 0.8]])).tolist() == [[0.2, 0.8]]


def test_labels_become_safe_column_names():
    assert tx.column_name("SN Ib/c") == "prob_SN_Ib_c"


def test_model_classes_must_be_the_tree_leaves():
    with pytest.raises(InvalidArgument, match="do not match"):
        tx.from_tree(ORACLE, ["AGN", "CV"])


def test_tree_round_trips_through_json():
    t = tx.from_json('{"Persistent": {"AGN": {}, "CV": {}}, "Transient": {"SN Ia": {}}}')
    assert t.as_tree() == {"Persistent": {"AGN": {}, "CV": {}}, "Transient": {"SN Ia": {}}}
