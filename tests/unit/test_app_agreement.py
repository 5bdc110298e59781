"""One labeller's history and labeller agreement, on label events as the trainer stores them (LabelStore on a real
local store) for real alerts (Fink-distributed ZTF packets)."""

from datetime import UTC, datetime, timedelta

import pytest

from skysift.alerts.decode import decode_packets
from skysift.app.agreement import agreement, history
from skysift.app.labelling import UNDO_COMMENT
from skysift.trainer.labels import LabelEvent, LabelStore
from tests.app_support import fink_labeled_packets

T0 = datetime(2026, 1, 5, 20, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def alerts():
    """(candid, objectId) of four real alerts."""
    table = decode_packets(fink_labeled_packets()[:4], keep_cutouts=False).alerts["ztf"]
    return list(zip(table["candid"].to_pylist(), table["objectId"].to_pylist()))


@pytest.fixture
def labels(local_store):
    return LabelStore(local_store)


def submit(labels, alerts, user, rows):
    """``rows``: (alert index, label, comment) in the order given, one minute apart."""
    n = len(labels.history())
    labels.submit([LabelEvent(candid=alerts[i][0], object_id=alerts[i][1], label=label, user=user, comment=comment,
                              timestamp=T0 + timedelta(minutes=n + k))
                   for k, (i, label, comment) in enumerate(rows)])


def test_two_labellers_agreement_and_kappa(labels, alerts):
    submit(labels, alerts, "ann", [(0, "galactic", ""), (1, "galactic", ""), (2, "extragalactic", ""),
                                   (3, "extragalactic", "")])
    submit(labels, alerts, "bob", [(0, "galactic", ""), (1, "extragalactic", ""), (2, "extragalactic", ""),
                                   (3, "extragalactic", "")])
    found = agreement(labels.history())
    (pair,) = found.pairs
    # observed 3/4; chance: ann g,g,e,e and bob g,e,e,e give 0.5·0.25 + 0.5·0.75 = 0.5; kappa = (0.75-0.5)/(1-0.5)
    assert (pair.user_a, pair.user_b, pair.n, pair.agreed, pair.percent) == ("ann", "bob", 4, 3, 75.0)
    assert pair.kappa == pytest.approx(0.5)
    assert found.n_shared == 4
    assert found.disagreements == [{"candid": alerts[1][0], "objectId": alerts[1][1],
                                    "labels": {"ann": "galactic", "bob": "extragalactic"}}]


def test_current_labels_count_skips_and_undone_labels_do_not(labels, alerts):
    submit(labels, alerts, "ann", [(0, "agn", ""), (1, "bogus", ""), (2, "skip", "")])
    submit(labels, alerts, "bob", [(0, "galactic", ""), (0, "agn", ""), (1, "real", ""), (1, "skip", UNDO_COMMENT),
                                   (2, "skip", "")])
    found = agreement(labels.history())
    # alert 0: bob's relabel to agn is his label; alert 1: bob took his back; alert 2: both skipped
    (pair,) = found.pairs
    assert (pair.n, pair.agreed, pair.percent, pair.kappa) == (1, 1, 100.0, None)  # one label between them
    assert found.n_shared == 1 and found.disagreements == []


def test_pairs_only_for_users_with_alerts_in_common(labels, alerts):
    submit(labels, alerts, "ann", [(0, "galactic", ""), (1, "agn", "")])
    submit(labels, alerts, "bob", [(0, "varstar", "")])
    submit(labels, alerts, "cid", [(3, "real", "")])
    found = agreement(labels.history())
    assert [(p.user_a, p.user_b, p.n, p.agreed, p.kappa) for p in found.pairs] == [("ann", "bob", 1, 0, 0.0)]
    assert [d["labels"] for d in found.disagreements] == [{"ann": "galactic", "bob": "varstar"}]


def test_history_is_one_users_events_latest_first(labels, alerts):
    submit(labels, alerts, "ann", [(0, "galactic", "a star"), (1, "agn", ""), (1, "skip", UNDO_COMMENT)])
    submit(labels, alerts, "bob", [(2, "real", "")])
    rows = history(labels.history(), "ann")
    assert [(r["candid"], r["label"], r["comment"]) for r in rows] == [
        (str(alerts[1][0]), "undo", ""), (str(alerts[1][0]), "agn", ""), (str(alerts[0][0]), "galactic", "a star")]
    assert rows[0]["time"] > rows[1]["time"] > rows[2]["time"]
    assert rows[2]["objectId"] == alerts[0][1]
