"""`skysift label import|export` on a local store."""

from __future__ import annotations

import csv

from typer.testing import CliRunner

from skysift.cli import app


def test_import_then_export_round_trips_the_prototype_csv(tmp_path, local_settings):
    src = tmp_path / "labels.csv"
    src.write_text("candid,objectId,label,timestamp\n"
                   "1786385875815010010,ZTF18ablwjuy,galactic,2025-06-02T12:00:00\n"
                   "1786142742615010038,ZTF18abvhysb,agn,2025-06-02T12:05:00\n")
    runner = CliRunner()
    imported = runner.invoke(app, ["label", "import", str(src), "--user", "heloise"])
    assert imported.exit_code == 0 and "imported 2 labels" in imported.output
    out = tmp_path / "export.csv"
    exported = runner.invoke(app, ["label", "export", str(out)])
    assert exported.exit_code == 0 and "exported 2 labels" in exported.output
    rows = {r["candid"]: r["label"] for r in csv.DictReader(out.open())}
    assert rows == {"1786385875815010010": "galactic", "1786142742615010038": "agn"}


def test_import_with_an_unknown_label_fails_with_the_line(tmp_path, local_settings):
    src = tmp_path / "labels.csv"
    src.write_text("candid,objectId,label,timestamp\n1,ZTF1,supernova,\n")
    result = CliRunner().invoke(app, ["label", "import", str(src), "--user", "u"])
    assert result.exit_code == 2 and "line 2: unknown label 'supernova'" in result.output
