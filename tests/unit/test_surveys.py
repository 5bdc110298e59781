"""The survey registry: every survey-specific rule comes from one module per survey, an unknown survey fails
loudly, and a survey registered by test code alone runs a whole poll."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import fastavro
import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from skysift.alerts import surveys
from skysift.alerts.decode import Packet, decode
from skysift.alerts.surveys import UnknownSurvey, ztf
from skysift.features.core import FEATURE_BANDS
from skysift.ingest.core import observing_night
from skysift.pipeline import InProcessStages, run_poll
from skysift.store import keys

ZTF_PACKETS = sorted((Path(__file__).parents[1] / "data/alerts/ztf/avro/alerce_ztf_samples").glob("*.avro"))[:6]


class Demo(ztf.Ztf):
    """A made-up survey: ZTF's packets with the ``candidate`` record renamed ``detection``, nights named a day
    after their UTC date, no Lasair, no broker pages."""

    name = "demo"
    columns = [("detection" if c == "candidate" else c) for c in ztf.COLUMNS]
    night_shift_hours = 24.0
    lasair_api = None

    def detect(self, fields) -> bool:
        return "detection" in fields

    def clean(self, df: pl.DataFrame, version: str | None) -> pl.DataFrame:
        return ztf.clean(df.rename({"detection": "candidate"})).with_columns(pl.lit(self.name).alias("survey"))

    def links(self, object_id: str) -> dict[str, str]:
        return {}


@pytest.fixture
def demo_survey():
    survey = surveys.register(Demo())
    yield survey
    surveys.unregister(survey.name)


def demo_packet(path: Path) -> tuple[bytes, list[int]]:
    """A real ZTF packet re-encoded as a Demo one, and its candids."""
    with path.open("rb") as fh:
        reader = fastavro.reader(fh)
        schema = json.loads(reader.metadata["avro.schema"])
        records = list(reader)
    for f in schema["fields"]:
        if f["name"] == "candidate":
            f["name"] = "detection"
    for record in records:
        record["detection"] = record.pop("candidate")
    out = pa.BufferOutputStream()
    with pa.PythonFile(out, mode="w") as sink:
        fastavro.writer(sink, fastavro.parse_schema(schema), records)
    return out.getvalue().to_pybytes(), [r["detection"]["candid"] for r in records]


def test_an_unknown_survey_name_fails_loudly_naming_the_known_ones():
    with pytest.raises(UnknownSurvey, match="unknown survey 'hsc'; skysift knows ztf, lsst"):
        surveys.get("hsc")
    with pytest.raises(UnknownSurvey):  # not the UTC date of ZTF's rule, silently
        observing_night(np.array([2458800.5]), "hsc", datetime.now(timezone.utc))


def test_a_packet_of_no_registered_survey_is_a_dead_letter_naming_the_surveys(demo_survey):
    packet, _ = demo_packet(ZTF_PACKETS[0])
    surveys.unregister("demo")
    result = decode([Packet(packet)])
    assert not result.alerts
    assert result.dead_letters[0][1].startswith("unrecognised alert schema: not one of ztf, lsst")


def test_every_survey_observes_the_feature_set_bands():
    for name in surveys.names():
        assert set(FEATURE_BANDS) <= set(surveys.get(name).bands), name


def test_a_survey_may_not_redefine_a_column_with_another_type():
    class Clash(Demo):
        name = "clash"
        fields = [pa.field("fid", pa.string())]

    with pytest.raises(ValueError, match="'fid' is string, already int32"):
        surveys.register(Clash())
    assert "clash" not in surveys.names()


def test_a_survey_registered_in_test_code_runs_a_poll_end_to_end(demo_survey, local_settings, local_store, tmp_path,
                                                                  monkeypatch, empty_mlflow_uri):
    monkeypatch.setenv("SKYSIFT_MLFLOW_TRACKING_URI", empty_mlflow_uri)
    replay = tmp_path / "replay"
    replay.mkdir()
    candids = []
    for path in ZTF_PACKETS:
        packet, ids = demo_packet(path)
        (replay / path.name).write_bytes(packet)
        candids += ids

    monkeypatch.setenv("SKYSIFT_ENRICHMENT_LASAIR_TOKEN", "a-token")  # Sherlock is configured, but not for demo
    report = run_poll(InProcessStages(local_settings, local_store), replay_path=str(replay))

    assert report.counts["alerts"] == len(candids) and report.counts["dead_letters"] == 0
    written = {stage: [o.batch for o in report.outcomes if o.stage == stage and o.batch is not None]
               for stage in ("alerts", "enrichment", "features")}
    alerts = pa.concat_tables(local_store.read_table(b.key) for b in written["alerts"])
    assert sorted(alerts.column("candid").to_pylist()) == sorted(candids)
    assert set(alerts.column("survey").to_pylist()) == {"demo"}
    for batches in written.values():  # one batch per night, for each stage
        assert {keys.parse_batch(b.key).survey for b in batches} == {"demo"}
        assert sum(b.rows for b in batches) == len(candids)
    # the survey's own night rule: a day after the UTC date of the detection
    nights = {keys.parse_batch(b.key).night for b in written["alerts"]}
    utc_dates = {(datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(days=jd - 2440587.5 + 1)).strftime("%Y%m%d")
                 for jd in alerts.column("jd").to_pylist()}
    assert nights == utc_dates
    enriched = pa.concat_tables(local_store.read_table(b.key) for b in written["enrichment"])
    assert set(enriched.column("sherlock_status").to_pylist()) == {"not_configured"}  # demo has no Lasair
    assert any(o.stage == "inference" and "no model" in o.detail for o in report.outcomes)
