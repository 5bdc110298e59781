"""`skysift label export` on the real S3 store: who gave each label is exported, and ``--all-events`` gives every
event (another labeller's label, a relabel), not only the latest per alert, in the order they count."""

from __future__ import annotations

import csv

from typer.testing import CliRunner

from skysift.cli import app
from skysift.store import open_store
from skysift.trainer.labels import CSV_COLUMNS, LabelEvent, LabelStore

EVENTS = [  # (candid, objectId, label, user): two labellers disagree on one alert, one relabels another
    (1786385875815010010, "ZTF18ablwjuy", "galactic", "ann"),
    (1786385875815010010, "ZTF18ablwjuy", "extragalactic", "bob"),
    (1786142742615010038, "ZTF18abvhysb", "bogus", "ann"),
    (1786142742615010038, "ZTF18abvhysb", "agn", "ann"),
]


def submitted(settings) -> list[LabelEvent]:
    labels = LabelStore(open_store(settings=settings))
    for candid, object_id, label, user in EVENTS:  # one submit each: each gets its own later timestamp
        labels.submit([LabelEvent(candid=candid, label=label, user=user, object_id=object_id, model_tag="galactic",
                                  experiment="default", round=1)])
    return labels.events()


def test_export_has_the_user_and_all_events_has_every_event_in_order(s3_settings, tmp_path):
    events = submitted(s3_settings)
    runner = CliRunner()
    latest_csv, all_csv = tmp_path / "latest.csv", tmp_path / "all.csv"
    latest = runner.invoke(app, ["label", "export", str(latest_csv)])
    assert latest.exit_code == 0, latest.output
    rows = list(csv.DictReader(latest_csv.open()))
    assert list(rows[0])[:len(CSV_COLUMNS)] == list(CSV_COLUMNS)  # the prototype's columns stay first
    by_candid = {e.candid: e for e in events}  # the events in order: the last one per candid counts
    assert [(int(r["candid"]), r["label"], r["user"], r["source"]) for r in rows] == [
        (c, by_candid[c].label, by_candid[c].user, by_candid[c].source) for c in sorted(by_candid)]

    every = runner.invoke(app, ["label", "export", "--all-events", str(all_csv)])
    assert every.exit_code == 0 and f"exported {len(EVENTS)} label events" in every.output, every.output
    rows = list(csv.DictReader(all_csv.open()))
    assert [(int(r["candid"]), r["objectId"], r["label"], r["user"]) for r in rows] == EVENTS
    assert [r["event_id"] for r in rows] == [e.event_id for e in events]
    assert {(r["model_tag"], r["experiment"], r["round"]) for r in rows} == {("galactic", "default", "1")}


def test_all_events_is_documented_in_the_help():
    shown = CliRunner().invoke(app, ["label", "export", "--help"], terminal_width=200)
    assert shown.exit_code == 0 and "--all-events" in shown.output and "Every label event" in shown.output
