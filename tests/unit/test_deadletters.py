"""Dead letters re-driven as a poll source, on a local-directory store: a poll bounded below the letters takes some
and keeps the rest in their file, a letter copied into two files (a replay that died between writing its new letters
and removing the old ones) is taken once, and `skysift dlq list` groups letters by reason."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from skysift.cli import app
from skysift.config import Settings
from skysift.ingest.core import IngestStage
from skysift.ingest.settings import IngestSettings
from skysift.store.local import LocalStore
from tests import alert_packets as ap


def letters(store) -> list[dict]:
    return [d for k in store.list_keys("dlq/") for d in store.read_table(k).to_pylist()]


def dead_letters_of_truncated_containers(tmp_path: Path, n: int) -> tuple[LocalStore, IngestStage, list[bytes]]:
    """``n`` real ZTF containers cut short, polled from a directory: ``n`` dead letters in one file."""
    packets = tmp_path / "packets"
    packets.mkdir()
    cut = [path.read_bytes()[:700] for path in ap.ZTF_CONTAINERS[:n]]
    for i, data in enumerate(cut):
        (packets / f"{i:03d}.avro").write_bytes(data)
    store = LocalStore(tmp_path / "store")
    stage = IngestStage(Settings(store_url=str(store.root)), store, IngestSettings(replay_path=str(packets)))
    assert stage.poll().n_dead_letters == n
    return store, stage, cut


def test_a_bounded_replay_takes_some_letters_and_leaves_the_rest_in_their_file(tmp_path):
    store, stage, cut = dead_letters_of_truncated_containers(tmp_path, 3)
    (first_file,) = store.list_keys("dlq/")

    taken = stage.poll(replay_path="dlq://ingest/", max_alerts=1)  # still undecodable: written anew
    assert (taken.n_messages, taken.n_dead_letters, taken.n_alerts) == (1, 1, 0)
    assert [d["raw"] for d in store.read_table(first_file).to_pylist()] == cut[1:]  # the two given back
    assert sorted(d["raw"] for d in letters(store)) == sorted(cut)  # none lost, none doubled

    rest = stage.poll(replay_path="dlq://ingest/")
    assert rest.n_messages == 3 and first_file not in store.list_keys("dlq/")
    assert sorted(d["raw"] for d in letters(store)) == sorted(cut)
    assert {d["source"] for d in letters(store)} == {str(tmp_path / "packets" / f"{i:03d}.avro") for i in range(3)}


def test_a_letter_in_two_files_is_taken_once(tmp_path):
    store, stage, cut = dead_letters_of_truncated_containers(tmp_path, 2)
    (key,) = store.list_keys("dlq/")
    store.put_bytes(key.replace(".parquet", "_copy.parquet"), store.get_bytes(key))
    again = stage.poll(replay_path="dlq://ingest/")
    assert again.n_messages == 2 and sorted(d["raw"] for d in letters(store)) == sorted(cut)


def test_dlq_list_groups_by_night_topic_and_reason_and_refuses_a_bad_night(tmp_path, monkeypatch):
    store, _, cut = dead_letters_of_truncated_containers(tmp_path, 3)
    monkeypatch.setenv("SKYSIFT_STORE_URL", str(store.root))
    listed = CliRunner().invoke(app, ["dlq", "list"])
    assert listed.exit_code == 0, listed.output
    rows = [line for line in listed.output.splitlines() if "replay" in line]
    assert len(rows) == 1 and rows[0].rstrip(" │").endswith(" 3")  # one reason, whatever byte each cut ends at
    assert "total: 3 dead letters" in listed.output
    bad = CliRunner().invoke(app, ["dlq", "list", "--night", "2026-12-03"])
    assert bad.exit_code == 2 and "expected YYYYMMDD" in bad.output
    bad = CliRunner().invoke(app, ["dlq", "replay", "--night", "../x"])
    assert bad.exit_code == 2 and "expected YYYYMMDD" in bad.output
