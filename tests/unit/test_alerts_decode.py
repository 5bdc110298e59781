"""Batch decoding of real packets in every format, each field checked against the packet decoded by fastavro."""

from __future__ import annotations

import io
import json
import math

import fastavro
import pytest

import skysift.alerts.decode as decoder
from skysift.alerts import avro, decode_packets
from skysift.alerts.decode import Packet, decode
from skysift.alerts.schema import CUTOUTS_SCHEMA, HISTORY_DAYS
from skysift.alerts.surveys import alerts_schema
from tests import alert_packets as ap
from tests.alert_packets import check, close, expected_lsst, expected_ztf, row_by_candid

# one file per schema generation and producer: ZTF's own 1.7/3.x samples, ALeRCE (no top-level candid),
# Kowalski 4.x (fp_hists), Fink (topLevelRecord with added values)
ZTF_FILES = [p for p in ap.ZTF_CONTAINERS if p.name in {
    "396522680015020000.avro", "2019_01_10_739260766315010006.avro", "1661382530015060001.avro",
    "000010510239033826.avro"}] + [p for p in ap.ZTF_CONTAINERS if "kowalski" in str(p)][:2] + ap.FINK_CONTAINERS[:2]


@pytest.mark.parametrize("path", ZTF_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_ztf_container_fields_match_the_packet(path):
    made = ap.ztf_containers([path])[0]
    result = decode_packets([made.value])
    assert result.dead_letters == []
    check(row_by_candid(result.alerts["ztf"], expected_ztf(made.record)["candid"]), expected_ztf(made.record))


def test_fink_schemaless_packets_keep_fink_added_values():
    made = ap.fink_packets(ap.FINK_CONTAINERS[:3])
    result = decode([Packet(m.value, schema=m.key) for m in made])
    assert result.dead_letters == [] and result.alerts["ztf"].num_rows == len(made)
    for m in made[:5]:
        exp = expected_ztf(m.record)
        row = row_by_candid(result.alerts["ztf"], exp["candid"])
        check(row, exp)
        assert row["cdsxmatch"] == m.record["cdsxmatch"] and row["cdsxmatch"] is not None


@pytest.mark.parametrize("wire_id", [900, 1000, 1100])
def test_rubin_wire_format_fields_match_the_packet(wire_id):
    made = ap.rubin_v9(4) if wire_id == 900 else ap.rubin_v10(wire_id)
    result = decode_packets([m.value for m in made])
    assert result.dead_letters == []
    table = result.alerts["lsst"]
    assert table.num_rows == len(made) and set(table.column("schema_version").to_pylist()) == {f"{wire_id // 100}.0"}
    for m in made:
        check(row_by_candid(table, m.record["diaSourceId"]), expected_lsst(m.record))


def test_a_rubin_packet_is_read_as_it_came_its_header_as_the_first_field():
    """Copying each 100-260 KB packet to drop its 5-byte Confluent header cost more than the rest of its framing:
    the header is read as a fixed field of the record instead, and the packet is the block as it came."""
    made = ap.rubin_v10(1000)[0]
    schema, codec, blocks, version = decoder._split(Packet(made.value))
    assert blocks[0][1] is made.value and (codec, version) == ("null", "10.0")
    record = fastavro.schemaless_reader(io.BytesIO(made.value), fastavro.parse_schema(json.loads(schema)), None)
    assert record[avro.HEADER_FIELD] == made.value[:5] and record["diaSourceId"] == made.record["diaSourceId"]


def test_rubin_alert_without_dia_object_takes_the_source_ids():
    made = [m for m in ap.rubin_v10() if m.record["diaObject"] is None]
    assert made, "the 2026 sample has solar-system alerts without a diaObject"
    row = decode_packets([m.value for m in made]).alerts["lsst"].to_pylist()[0]
    assert row["objectId"] == f"ss{made[0].record['diaSource']['ssObjectId']}"


def test_rubin_upper_limits_are_forced_sources_on_visits_without_detection():
    m = next(m for m in ap.rubin_v10() if m.record["prvDiaForcedSources"])
    row = decode_packets([m.value]).alerts["lsst"].to_pylist()[0]
    src = m.record["diaSource"]
    jd = src["midpointMjdTai"] + 2400000.5
    detected = {p["visit"] for p in m.record["prvDiaSources"] or []} | {src["visit"]}
    forced = sorted((f for f in m.record["prvDiaForcedSources"]
                     if f["visit"] not in detected and jd - HISTORY_DAYS <= f["midpointMjdTai"] + 2400000.5 < jd),
                    key=lambda f: f["midpointMjdTai"])
    assert len(row["ul_jd"]) == len(forced) > 0
    assert all(close(g, -2.5 * math.log10(5 * f["psfFluxErr"]) + 31.4) for g, f in zip(row["ul_diffmaglim"], forced))


def test_auto_detects_every_format_in_one_batch():
    ztf = ap.ztf_containers(ZTF_FILES[:2])
    fink = ap.fink_packets(ap.FINK_CONTAINERS[:1])
    rubin = ap.rubin_v9(2)
    packets = [Packet(m.value) for m in ztf + rubin] + [Packet(m.value, schema=m.key) for m in fink]
    result = decode(packets)
    assert result.dead_letters == []
    assert result.alerts["ztf"].num_rows == sum(ap.records(p)[1].__len__() for p in ZTF_FILES[:2]) + len(fink)
    assert result.alerts["lsst"].num_rows == len(rubin)
    assert all(t.schema.equals(alerts_schema()) for t in result.alerts.values())


def test_bad_packets_become_dead_letters_and_the_good_ones_decode():
    good = ap.rubin_v9(3)
    container = ap.ztf_containers(ZTF_FILES[:1])[0].value
    fink = ap.fink_packets(ap.FINK_CONTAINERS[:1])[0].value
    bad = {
        "truncated container": container[: len(container) // 2],
        "truncated wire payload": good[0].value[:-100],
        "random bytes": bytes(range(256)) * 4,
        "unknown schema id": b"\x00" + (4200).to_bytes(4, "big") + good[1].value[5:],
        "wrong schema": b"\x00" + (1000).to_bytes(4, "big") + fink,  # a ZTF payload labelled as Rubin 10.0
        "empty": b"",
    }
    result = decode_packets([m.value for m in good] + list(bad.values()) + [container])
    assert sorted(result.alerts["lsst"].column("candid").to_pylist()) == sorted(m.record["diaSourceId"] for m in good)
    assert result.alerts["ztf"].num_rows == 1
    assert sorted(raw for raw, _ in result.dead_letters) == sorted(bad.values())
    errors = dict((raw, err) for raw, err in result.dead_letters)
    assert "unknown Rubin schema id 4200" in errors[bad["unknown schema id"]]
    assert "truncated" in errors[bad["truncated container"]]


def test_schemaless_value_without_schema_is_a_dead_letter():
    fink = ap.fink_packets(ap.FINK_CONTAINERS[:1])[0]
    result = decode_packets([fink.value], format="schemaless")
    assert result.alerts == {} and "no writer schema" in result.dead_letters[0][1]


def test_cutouts_only_when_asked():
    made = ap.ztf_containers(ZTF_FILES[:1]) + ap.rubin_v9(1)
    without = decode_packets([m.value for m in made])
    with_cutouts = decode_packets([m.value for m in made], keep_cutouts=True)
    assert without.cutouts == {}
    assert set(with_cutouts.cutouts) == {"ztf", "lsst"}
    ztf = with_cutouts.cutouts["ztf"]
    assert ztf.schema.equals(CUTOUTS_SCHEMA)
    assert ztf.column("cutout_science")[0].as_py() == made[0].record["cutoutScience"]["stampData"]
    assert with_cutouts.cutouts["lsst"].column("cutout_difference")[0].as_py() == made[1].record["cutoutDifference"]


def test_fink_parquet_files_decode_like_packets():
    paths = sorted((ap.DATA / "lsst" / "real" / "fink-tutorials_ftransfer_2026-03-27").glob("*.parquet"))[:2]
    paths += sorted((ap.DATA / "ztf" / "fink_labeled" / "parquet").rglob("*.parquet"))[:1]
    import pyarrow.parquet as pq

    result = decode_packets([p.read_bytes() for p in paths])
    assert result.dead_letters == []
    assert result.alerts["lsst"].num_rows == sum(pq.read_metadata(p).num_rows for p in paths[:2])
    assert result.alerts["ztf"].num_rows == pq.read_metadata(paths[2]).num_rows
    xm = result.alerts["lsst"].column("xm_simbad_otype").to_pylist()
    assert xm == [r["simbad_otype"] for t in paths[:2] for r in pq.read_table(t, columns=["xm"]).column("xm").to_pylist()]
