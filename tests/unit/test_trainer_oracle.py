"""Oracle labels from Fink's SIMBAD/TNS types: cleaning of mixed names and the galactic/extragalactic mapping."""

from __future__ import annotations

import pandas as pd
import pytest

from skysift.trainer import oracle
from tests.trainer_data import LABELS_CSV


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("EB*", "EclBin"), ("EclBin", "EclBin"), ("RRLyr", "RRLyrae"), ("(SIMBAD) Seyfert_2", "Seyfert2"),
        ("Seyfert2", "Seyfert2"), ("CataclyV*_Candidate", "CataclyV*"), ("Candidate_YSO", "YSO"),
        ("(SIMBAD) ULX?", "ULX"), ("(TNS) SN Ia-91bg-like", "Supernova"), ("SLSN-I", "Supernova"),
        ("Fail 503", "Fail"), ("LPV*", "LongPeriodV*"),
    ],
)
def test_clean_type_merges_old_and_new_simbad_names(raw, expected):
    assert oracle.clean_type(raw)[1] == expected


@pytest.mark.parametrize(
    "raw, label",
    [("RRLyrae", "galactic"), ("YSO_Candidate", "galactic"), ("Galaxy", "extragalactic"), ("QSO", "extragalactic"),
     ("(TNS) SN II", "extragalactic"), ("Unknown", None), ("Fail 500", None), ("blue", None),
     ("SN candidate", None), ("(TNS) Nova", None), ("(SIMBAD) Candidate_Nova", "galactic")],
)
def test_classify(raw, label):
    assert oracle.classify(raw) == label


def test_every_type_in_the_fink_sample_is_mapped_or_known_uninformative():
    table = pd.read_csv(LABELS_CSV)
    assert oracle.unmapped(table["cdsxmatch"]) == []


def test_oracle_labels_use_tns_when_simbad_says_nothing():
    table = pd.DataFrame({"candid": [1, 2, 3], "objectId": ["a", "b", "c"],
                          "cdsxmatch": ["Unknown", "Unknown", "Mira"], "tns": ["SLSN-I", "Unknown", None]})
    out = oracle.oracle_labels(table)
    assert out.set_index("candid")["label"].to_dict() == {1: "extragalactic", 3: "galactic"}


def test_fink_sample_gives_both_classes_in_numbers():
    out = oracle.oracle_labels(pd.read_csv(LABELS_CSV))
    counts = out["label"].value_counts()
    assert out["candid"].is_unique and counts["galactic"] > 150 and counts["extragalactic"] > 150


@pytest.mark.parametrize("raw, label", [("EmG", "extragalactic"), ("Em*", "galactic"), ("PulsV*WVir", "galactic"),
                                        ("PulsV*delSct", "galactic")])
def test_types_an_unseen_fink_set_held_are_mapped(raw, label):
    assert oracle.classify(raw) == label


def test_left_out_rows_are_counted_by_kind():
    table = pd.DataFrame({"candid": [1, 2, 3, 4, 5], "objectId": list("abcde"),
                          "cdsxmatch": ["Unknown", "Unknown", "Xyzzy*", "RRLyr", "Fail 500"]})
    uninformative, not_mapped = oracle.left_out(table)
    assert uninformative == {"Unknown": 2, "Fail": 1} and not_mapped == {"Xyzzy*": 1}
