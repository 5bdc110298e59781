"""Stamps cut off before the batch decode when they are not kept: the rows must be those of the whole packets."""

from __future__ import annotations

import copy
import io
import json
import re
from datetime import UTC, datetime

import fastavro
import pytest

import skysift.alerts.decode as decoder
from skysift.alerts import avro, surveys
from skysift.alerts.decode import Packet, decode
from skysift.alerts.surveys import lsst
from tests import alert_packets as ap

NOW = datetime(2026, 1, 1, tzinfo=UTC)
# ZTF 4.02 as Fink distributes it: the stamps end the schema (Fink's labelled alerts add fields after them)
DISTRIBUTED = sorted((ap.DATA / "ztf" / "avro" / "fink-broker_distribute").glob("*.avro"))


def fink(n: int) -> list[ap.Made]:
    """Fink's Kafka messages of the distributed alerts: schemaless payloads, the schema in the key."""
    out = []
    for path in DISTRIBUTED[:n]:
        container = avro.split_container(path.read_bytes())
        out.append(ap.Made(container.blocks[0][1], ap.records(path)[1][0], container.schema))
    return out


def _whole(packets: list[Packet], monkeypatch) -> decoder.DecodeResult:
    """The same packets decoded without cutting any stamps."""
    with monkeypatch.context() as m:
        m.setattr(decoder, "trailing_stamps", lambda survey, fields: frozenset())
        return decode(packets, now=NOW)


def _reencoded(made: ap.Made, **changes) -> bytes:
    """A Fink packet's payload written again with some fields changed."""
    schema = fastavro.parse_schema(json.loads(made.key))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, {**copy.deepcopy(made.record), **changes})
    return buf.getvalue()


def test_stamps_are_found_where_the_alert_fields_end():
    ztf = fink(3)
    rubin = ap.rubin_v9(2) + ap.rubin_v10()[:2]
    magics = list(avro.STAMP_MAGICS)
    for made in ztf:  # ZTF's are gzipped FITS in records with their file name, cutoutScience first
        start = avro.stamps_start(made.value, magics)
        science = made.record["cutoutScience"]["stampData"]
        assert made.value[start:start + len(science)] == science
        assert made.value.endswith(made.record["cutoutDifference"]["stampData"])
    for made in rubin:  # Rubin's are bare FITS bytes, cutoutDifference first
        payload = made.value[5:]
        start = avro.stamps_start(payload, magics)
        difference = made.record["cutoutDifference"]
        assert payload[start:start + len(difference)] == difference
        assert payload.endswith(made.record["cutoutTemplate"])


def test_records_without_stamps_at_their_end_are_not_cut():
    made = fink(1)[0]
    magics = list(avro.STAMP_MAGICS)
    assert avro.stamps_start(made.value[:-50], magics) is None  # the last stamp is truncated
    assert avro.stamps_start(made.value + b"\x00", magics) is None  # something follows the stamps
    assert avro.stamps_start(_reencoded(made, cutoutDifference=None), magics) is None  # a null stamp ends it
    assert avro.without_stamps([(2, made.value + made.value)]) == [None]  # two records in one block


def test_the_cut_blocks_decode_to_the_same_columns_as_the_whole_ones():
    """What the cut relies on: jetliner reads a one-record block's record and ignores what follows it."""
    made = fink(5)
    schema = made[0].key
    fields = avro.top_level_fields(schema)
    stamps = decoder.trailing_stamps(surveys.get("ztf"), fields)
    assert stamps == {"cutoutScience", "cutoutTemplate", "cutoutDifference"}
    blocks = [(1, m.value) for m in made]
    cut = avro.without_stamps(blocks)
    assert all(c is not None for c in cut)
    columns = decoder.read_columns(surveys.get("ztf"), fields, keep_cutouts=False)
    whole = avro.read_container(avro.frame_parts(avro.inlined(schema), "null", blocks), columns)
    assert avro.read_container(avro.frame_parts(avro.inlined(schema, stamps), "null", cut), columns).equals(whole)


def test_a_batch_of_cut_and_whole_packets_gives_the_rows_of_the_whole_packets_in_order(monkeypatch):
    ztf = fink(7)
    packets = [Packet(m.value, schema=m.key, offset=i) for i, m in enumerate(ztf[:6])]
    packets.insert(2, Packet(_reencoded(ztf[6], cutoutDifference=None), schema=ztf[6].key, offset=6))  # whole
    packets += [Packet(m.value) for m in ap.rubin_v9(3)]
    result = decode(packets, now=NOW)
    expected = _whole(packets, monkeypatch)
    assert set(result.alerts) == {"ztf", "lsst"} and result.dead_letters == []
    for survey, table in expected.alerts.items():
        assert result.alerts[survey].equals(table)
    assert result.alerts["ztf"].column("offset").to_pylist() == [0, 1, 6, 2, 3, 4, 5]


def test_damaged_packets_beside_cut_ones_are_the_same_dead_letters(monkeypatch):
    ztf, rubin = fink(4), ap.rubin_v9(3)
    packets = [Packet(m.value, schema=m.key) for m in ztf[:3]] + [Packet(m.value) for m in rubin]
    packets.insert(1, Packet(ztf[3].value[:-50], schema=ztf[3].key))  # the last stamp truncated
    packets.insert(-1, Packet(rubin[0].value[:-100]))
    packets.append(Packet(ztf[3].value[:2000], schema=ztf[3].key))  # cut inside the candidate
    result = decode(packets, now=NOW)
    expected = _whole(packets, monkeypatch)
    def letters(r):  # fastavro's messages name the buffer object by its address
        return [(raw, re.sub(r" at 0x[0-9a-f]+", "", error)) for raw, error in r.dead_letters]
    assert letters(result) == letters(expected) and len(result.dead_letters) == 3
    for survey, table in expected.alerts.items():
        assert result.alerts[survey].equals(table)


def test_a_cut_that_falls_short_of_the_fields_read_falls_back_to_the_whole_packets(monkeypatch):
    made = fink(4)
    packets = [Packet(m.value, schema=m.key) for m in made]
    monkeypatch.setattr(avro, "stamps_start", lambda record, magics: 100)  # inside the candidate record
    result = decode(packets, now=NOW)
    assert result.dead_letters == []
    assert result.alerts["ztf"].equals(_whole(packets, monkeypatch).alerts["ztf"])


@pytest.mark.parametrize("survey,fields,expected", [
    ("ztf", ("candid", "candidate", "cutoutScience", "cutoutTemplate", "cutoutDifference"),
     {"cutoutScience", "cutoutTemplate", "cutoutDifference"}),
    ("ztf", ("candid", "cutoutScience", "candidate"), set()),  # a field read after a stamp: nothing is cut
    ("ztf", ("candid", "candidate"), set()),
    ("lsst", avro.top_level_fields(lsst.schema_for_id(1000)),
     {"cutoutScience", "cutoutTemplate", "cutoutDifference"}),
])
def test_only_stamps_that_end_the_schema_are_cut(survey, fields, expected):
    assert decoder.trailing_stamps(surveys.get(survey), fields) == expected

