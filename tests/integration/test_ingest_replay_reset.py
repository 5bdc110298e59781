"""`skysift ingest reset-cursor`: a replay path read again from its start, and the stamps an earlier poll did not
keep added to the alerts it stored (what a first `make dev` without stamps needed)."""

from __future__ import annotations

import shutil

from typer.testing import CliRunner

from skysift.cli import app
from skysift.config import Settings
from skysift.ingest.core import IngestStage
from skysift.ingest.settings import IngestSettings
from skysift.store import keys, open_store
from tests import alert_packets as ap

MULTI = ap.DATA / "ztf" / "fink_labeled" / "avro_more"  # 11 alerts of 2019-11-01, 31 of 2026-03-22


def test_reset_cursor_reads_the_path_again_and_adds_the_stamps_the_first_poll_left_out(tmp_path, monkeypatch):
    path = str(shutil.copytree(MULTI, tmp_path / "alerts"))
    settings = Settings(store_url=str(tmp_path / "store"))
    store = open_store(settings=settings)
    first = IngestStage(settings, store, IngestSettings()).poll(replay_path=path, keep_cutouts=False)
    assert first.n_alerts == 42 and not first.cutouts and not store.list_keys("cutouts/")
    assert IngestStage(settings, store, IngestSettings()).poll(replay_path=path, keep_cutouts=True).n_messages == 0

    monkeypatch.setenv("SKYSIFT_STORE_URL", settings.store_url)
    out = CliRunner().invoke(app, ["ingest", "reset-cursor", path])
    assert out.exit_code == 0, out.output
    assert f"{len(list(MULTI.glob('*.avro')))} of its" in out.output

    again = IngestStage(settings, store, IngestSettings()).poll(replay_path=path, keep_cutouts=True)
    assert (again.n_alerts, again.n_duplicates) == (0, 42)  # no alert twice
    stored = sorted(b.key for b in first.alerts)
    assert sorted(b.key for b in again.cutouts) == [str(keys.parse_batch(k).sibling("cutouts")) for k in stored]
    for key in stored:
        stamps = store.read_table(str(keys.parse_batch(key).sibling("cutouts")))
        assert sorted(stamps.column("candid").to_pylist()) == sorted(store.read_table(key).column("candid").to_pylist())
        assert all(stamps.column("cutout_difference").to_pylist())
    # once there, a batch's stamps are not written again
    assert CliRunner().invoke(app, ["ingest", "reset-cursor", path]).exit_code == 0
    assert not IngestStage(settings, store, IngestSettings()).poll(replay_path=path, keep_cutouts=True).cutouts


def test_reset_cursor_of_a_path_that_does_not_exist_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("SKYSIFT_STORE_URL", str(tmp_path / "store"))
    out = CliRunner().invoke(app, ["ingest", "reset-cursor", str(tmp_path / "nowhere")])
    assert out.exit_code != 0 and "nowhere" in out.output and "Traceback" not in out.output
