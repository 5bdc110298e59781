"""Held-out split (stratified, sticky, seeded), metrics, and the training-set quality checks."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from skysift.trainer import evaluation


def test_holdout_split_is_stratified():
    targets = {c: int(c % 4 == 0) for c in range(1, 101)}  # 25 positives, 75 negatives
    held = evaluation.assign_holdout(targets, {}, Counter(targets.values()), 0.2, seed=0)
    assert Counter(targets[c] for c in held) == {1: 5, 0: 15}


def test_holdout_split_only_tops_up_with_new_labels():
    first = {c: c % 2 for c in range(1, 31)}
    held = evaluation.assign_holdout(first, {}, Counter(first.values()), 0.2, seed=0)
    new = {c: c % 2 for c in range(31, 41)}
    everything = {**first, **new}
    more = evaluation.assign_holdout(new, Counter(first[c] for c in held), Counter(everything.values()), 0.2, seed=0)
    assert more <= set(new) and len(held) + len(more) == 8


def test_holdout_choice_depends_on_seed_not_on_input_order():
    targets = {c: c % 2 for c in range(1, 51)}
    reordered = dict(reversed(list(targets.items())))
    a = evaluation.assign_holdout(targets, {}, Counter(targets.values()), 0.2, seed=1)
    assert a == evaluation.assign_holdout(reordered, {}, Counter(targets.values()), 0.2, seed=1)
    assert a != evaluation.assign_holdout(targets, {}, Counter(targets.values()), 0.2, seed=2)


def test_metrics_on_a_known_confusion():
    y = [1, 1, 1, 0, 0, 0, 0, 0]
    p = [0.9, 0.8, 0.3, 0.6, 0.2, 0.1, 0.1, 0.4]
    m = evaluation.metrics(y, p)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (2, 1, 1, 4)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3) and m["accuracy"] == pytest.approx(6 / 8)
    assert m["roc_auc"] == pytest.approx(13 / 15)


def test_roc_auc_is_left_out_with_one_class():
    assert "roc_auc" not in evaluation.metrics([0, 0, 0], [0.1, 0.7, 0.2])


def _samples(n=20, **over):
    df = pd.DataFrame({"candid": np.arange(1, n + 1), "target": np.arange(n) % 2, "a": 1.0, "b": 2.0})
    for k, v in over.items():
        df[k] = v
    return df


def test_clean_training_set_passes_quality():
    report = evaluation.quality(_samples(), ["a", "b"])
    assert report.ok and report.score == 1.0


@pytest.mark.parametrize(
    "mutate, issue",
    [
        (lambda d: d.assign(target=0), "only one class"),
        (lambda d: d.assign(target=(d.candid == 1).astype(int)), "class imbalance"),
        (lambda d: pd.concat([d, d.head(2)]), "2 duplicate candid rows"),
        (lambda d: d.assign(a=np.where(d.candid <= 3, np.nan, 1.0), b=np.where(d.candid <= 3, np.nan, 2.0)),
         "3 rows have no features"),
    ],
)
def test_quality_reports_each_problem(mutate, issue):
    report = evaluation.quality(mutate(_samples()), ["a", "b"])
    assert not report.ok and any(issue in i for i in report.issues) and report.score < 1.0


def test_quality_flags_a_multiclass_class_without_samples():
    """Three classes of which two have samples: balanced between the two present, the set still cannot teach the
    third (the check counted only the classes present)."""
    classes = ("star", "agn", "sn")
    missing_sn = evaluation.quality(_samples(), ["a", "b"], classes=classes)
    assert missing_sn.issues == ["no samples of class sn (2 of 3 classes present)"] and missing_sn.score == 0.0
    every_class = evaluation.quality(_samples(30).assign(target=np.arange(30) % 3), ["a", "b"], classes=classes)
    assert every_class.ok and every_class.score == 1.0


@pytest.mark.parametrize("classes, y_true, y_pred", [
    (("not_galactic", "galactic"), [0, 0, 1, 1, 1], [0, 1, 1, 1, 0]),
    (("SN Ia", "SN II", "AGN"), [0, 1, 2, 2, 1, 0], [0, 2, 2, 2, 1, 1]),
])
def test_a_logged_confusion_matrix_reads_back_as_the_round_counted_it(classes, y_true, y_pred):
    """The round logs the matrix and the rounds page reads it back: both through Confusion, so the page draws
    what the round counted (binary rounds log the four cells, multi-class ones the matrix with its classes)."""
    counted = evaluation.Confusion.of_predictions(y_true, y_pred, classes)
    read = evaluation.Confusion.from_logged(json.loads(json.dumps(counted.logged())), classes)
    assert read.classes == classes and read.matrix.tolist() == counted.matrix.tolist() and read.n == len(y_true)
    assert read.matrix[1, 1] == sum(t == p == 1 for t, p in zip(y_true, y_pred))
    assert read.png("title").startswith(b"\x89PNG")


def test_quality_reports_label_conflicts():
    report = evaluation.quality(_samples(), ["a", "b"], conflicts={1, 2})
    assert report.issues == ["2 candids have conflicting labels from different labellers"]



def test_the_champion_message_says_which_number_is_the_champions_and_which_the_candidates():
    """"held-out f1 0.800 beats 0.700" left the reader to guess which model had which score."""
    moved, why = evaluation.promotion("skysift_galactic", "4", "f1", 0.7, champion_version="3", champion_value=0.8)
    assert not moved
    assert "0.800 for it (the champion)" in why and "0.700 for version 4 (the candidate)" in why, why
    moved, why = evaluation.promotion("skysift_galactic", "4", "f1", 0.9, champion_version="3", champion_value=0.8)
    assert moved
    assert "0.900 for it (the candidate)" in why and "0.800 for version 3 (the champion until now)" in why, why
