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


def test_an_export_imported_into_another_store_keeps_who_gave_each_label(s3_settings, tmp_path, monkeypatch):
    """`label import` ignored the export's user column: every label became --user's. Imported without --user, each
    event keeps its labeller, so the other store's labels (and its latest per labeller) are the same; a row with
    no user and no --user is refused, naming its line, and nothing is written."""
    events = submitted(s3_settings)
    runner = CliRunner()
    exported = tmp_path / "all.csv"
    assert runner.invoke(app, ["label", "export", "--all-events", str(exported)]).exit_code == 0
    other = tmp_path / "other-store"
    monkeypatch.setenv("SKYSIFT_STORE_URL", str(other))
    imported = runner.invoke(app, ["label", "import", str(exported)])
    assert imported.exit_code == 0 and f"imported {len(EVENTS)} labels" in imported.output, imported.output
    copied = LabelStore(open_store(str(other))).events()
    assert [(e.candid, e.label, e.user, e.timestamp, e.source, e.event_id) for e in copied] == [
        (e.candid, e.label, e.user, e.timestamp, e.source, e.event_id) for e in events]
    assert runner.invoke(app, ["label", "import", str(exported)]).exit_code == 0  # again: nothing added
    assert len(LabelStore(open_store(str(other))).events()) == len(EVENTS)
    monkeypatch.setenv("SKYSIFT_STORE_URL", s3_settings.store_url)  # back into the store it came from: the same events
    assert runner.invoke(app, ["label", "import", str(exported)]).exit_code == 0
    assert len(LabelStore(open_store(settings=s3_settings)).events()) == len(EVENTS)
    monkeypatch.setenv("SKYSIFT_STORE_URL", str(other))

    anonymous = tmp_path / "anonymous.csv"
    anonymous.write_text("candid,objectId,label,timestamp,user\n11,ZTF1,bogus,2025-06-02T12:00:00,\n")
    refused = runner.invoke(app, ["label", "import", str(anonymous)])
    assert refused.exit_code != 0 and "line 2: no user" in refused.output, refused.output
    named = runner.invoke(app, ["label", "import", str(anonymous), "--user", "importer"])
    assert named.exit_code == 0, named.output
    assert {e.user for e in LabelStore(open_store(str(other))).events()} == {"ann", "bob", "importer"}
