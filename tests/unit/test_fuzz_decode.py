"""Fuzzing the alert decoders (hypothesis) with real packets made bad: each bad packet ends as a dead letter with
a message, or as rows of its own that pass the plausibility checks; it never crashes the batch and never changes
the rows of the good packets decoded beside it.

What cannot be caught, and is not asserted: Avro carries no checksum, so a flipped bit inside a value decodes to
another value (Kafka's record-batch CRC catches those in transit); a payload whose header names a compatible
schema decodes to the same record. Example counts are bounded so the file runs in well under 30 s.
"""

from __future__ import annotations

import copy
import io
import json
import math
from dataclasses import dataclass
from functools import cache

import fastavro
import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from skysift.alerts import avro
from skysift.alerts.decode import Packet, decode
from skysift.alerts.surveys import lsst
from skysift.features.core import FEATURE_COLUMNS, compute_features
from tests import alert_packets as ap

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                      HealthCheck.data_too_large])
BUNDLED_IDS = {lsst.schema_id(v) for v in lsst.bundled_versions()}


@dataclass(frozen=True)
class Base:
    """A real packet, how it travels, and the records it holds (what its rows must be)."""

    kind: str  # "container" | "schemaless" | "confluent"
    value: bytes
    key: bytes | None
    records: tuple

    def expected(self) -> list[dict]:
        return [ap.expected_lsst(r) if "diaSource" in r else ap.expected_ztf(r) for r in self.records]


@cache
def pool() -> tuple[Base, ...]:
    paths = [p for p in ap.ZTF_CONTAINERS if "multi" in p.name][:1]  # several alerts in one container
    snappy = [p for p in ap.ZTF_CONTAINERS if avro.split_container(p.read_bytes()).codec == "snappy"][:2]
    plain = [p for p in ap.ZTF_CONTAINERS if avro.split_container(p.read_bytes()).codec == "null"][:2]
    out = [Base("container", p.read_bytes(), None, tuple(ap.records(p)[1])) for p in paths + snappy + plain]
    out += [Base("schemaless", m.value, m.key, (m.record,)) for m in ap.fink_packets(ap.FINK_CONTAINERS[:1])[:3]]
    out += [Base("confluent", m.value, None, (m.record,)) for m in ap.rubin_v9(2)[:2] + ap.rubin_v10(1100)[:2]]
    return tuple(out)


def other_survey_schema(base: Base) -> bytes:
    """A writer schema of the other survey: the payload is read with a schema it was not written with."""
    return lsst.schema_for_id(1000) if base.kind == "schemaless" else next(b.key for b in pool() if b.key)


@st.composite
def mutated(draw):
    """(base, mutation name, bytes, key). Names in ALWAYS_DEAD must become dead letters."""
    base = draw(st.sampled_from(pool()))
    data, key = bytearray(base.value), base.key
    options = ["none", "flip", "truncate"] + {
        "container": ["bad_magic"],
        "schemaless": ["wrong_schema", "no_schema"],
        "confluent": ["bad_magic", "unknown_id", "wrong_schema"],
    }[base.kind]
    name = draw(st.sampled_from(options))
    position = st.one_of(st.integers(0, min(len(data), 4096) - 1), st.integers(0, len(data) - 1))  # headers too
    if name == "flip":
        for pos in draw(st.lists(position, min_size=1, max_size=4)):
            data[pos] ^= 1 << draw(st.integers(0, 7))
    elif name == "truncate":
        data = data[: draw(position)]
    elif name == "bad_magic":
        data[0] = draw(st.integers(1, 255)) if base.kind == "confluent" else data[0] ^ draw(st.integers(1, 255))
    elif name == "unknown_id":
        wire_id = draw(st.integers(0, 2**32 - 1).filter(lambda i: i not in BUNDLED_IDS))
        data[1:5] = wire_id.to_bytes(4, "big")
    elif name == "wrong_schema":
        if base.kind == "confluent":  # the Rubin body sent the Fink way, keyed with a ZTF schema
            data, key = data[5:], other_survey_schema(base)
        else:
            key = other_survey_schema(base)
    elif name == "no_schema":
        key = None
    return base, name, bytes(data), key


# detectable by construction: a cut schemaless/wire payload runs out of bytes; the others have no schema to read
ALWAYS_DEAD = {"bad_magic", "unknown_id", "wrong_schema", "no_schema"}


def plausible(row: dict) -> bool:
    return (row["candid"] is not None and bool(row["objectId"]) and 2_400_000 <= row["jd"] <= 2_600_000
            and 0 <= row["ra"] <= 360 and -90 <= row["dec"] <= 90)


def rows_by_packet(result) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for table in result.alerts.values():
        for row in table.to_pylist():
            out.setdefault(row["offset"], []).append(row)
    return out


def check_rows(rows: list[dict], expected: list[dict]) -> None:
    by_candid = {e["candid"]: e for e in expected}
    assert len({r["candid"] for r in rows}) == len(rows)
    for row in rows:
        ap.check(row, by_candid[row["candid"]])


@FUZZ
@given(st.lists(mutated(), min_size=1, max_size=6))
def test_bad_packets_are_dead_letters_or_their_own_rows_and_never_touch_the_good_ones(batch):
    note([(i, base.kind, pool().index(base), name, len(data)) for i, (base, name, data, _) in enumerate(batch)])
    packets = [Packet(data, schema=key, offset=i) for i, (_, _, data, key) in enumerate(batch)]
    result = decode(packets)  # never raises

    dead = {p.offset: err for p, (_, err) in zip(result.dead_packets, result.dead_letters)}
    rows = rows_by_packet(result)
    assert len(result.dead_letters) == len(dead) and all(isinstance(e, str) and e for e in dead.values())
    for i, (base, name, _data, _) in enumerate(batch):
        assert not (i in dead and i in rows), f"packet {i} ({name}) is both rows and a dead letter"
        if name == "none":
            assert i not in dead, dead.get(i)
            assert len(rows[i]) == len(base.records)
            check_rows(rows[i], base.expected())
        elif name in ALWAYS_DEAD or (name == "truncate" and base.kind != "container"):
            assert i in dead, f"{name} {base.kind} packet decoded to {len(rows.get(i, []))} rows"
        elif name == "truncate":  # a container cut at a block boundary is a shorter valid container
            assert i in dead or check_rows(rows[i], base.expected()) is None
        else:  # bit flips: no checksum in Avro, so only plausibility and the record count can be asserted
            assert i in dead or (all(plausible(r) for r in rows[i]) and len(rows[i]) <= len(base.records))


def test_container_without_records_is_a_dead_letter():
    base = pool()[0]
    container = avro.split_container(base.value)
    empty = avro.frame(container.schema, container.codec, [])
    result = decode([Packet(empty, offset=0), Packet(base.value, offset=1)])
    assert [p.offset for p in result.dead_packets] == [0] and "no alerts" in result.dead_letters[0][1]
    assert result.n_alerts == len(base.records)


def rubin_packet(record: dict, wire_id: int) -> bytes:
    return b"\x00" + wire_id.to_bytes(4, "big") + encode(record, json.loads(lsst.schema_for_id(wire_id)))


def test_a_packet_only_the_batch_reader_refuses_does_not_take_its_good_neighbours_down():
    """fastavro reads any non-zero byte as true; the Rust reader refuses a boolean byte of 0x20 (found by fuzzing)."""
    good = [b for b in pool() if b.kind == "confluent"][2:]
    record, wire_id = copy.deepcopy(good[0].records[0]), int.from_bytes(good[0].value[1:5], "big")
    record["diaSource"]["centroid_flag"] = False
    off = rubin_packet(record, wire_id)
    record["diaSource"]["centroid_flag"] = True
    on = bytearray(rubin_packet(record, wire_id))
    (flag,) = [i for i, (a, b) in enumerate(zip(off, on)) if a != b]
    on[flag] = 0x20
    result = decode([Packet(bytes(on), offset=0)] + [Packet(b.value, offset=i + 1) for i, b in enumerate(good)])

    assert [p.offset for p in result.dead_packets] == [0] and "boolean" in result.dead_letters[0][1]
    rows = rows_by_packet(result)
    for i, b in enumerate(good):
        check_rows(rows[i + 1], b.expected())


def test_detections_sharing_a_jd_keep_the_packet_order_whatever_the_batch():
    base = [b for b in pool() if b.kind == "confluent"][2]
    record, wire_id = copy.deepcopy(base.records[0]), int.from_bytes(base.value[1:5], "big")
    jd = record["diaSource"]["midpointMjdTai"] - 1
    template = record["prvDiaSources"][0]
    record["prvDiaSources"] = [{**template, "midpointMjdTai": jd, "diaSourceId": 10**12 + i, "visit": 10**9 + i}
                               for i in range(50)]
    packet = rubin_packet(record, wire_id)
    for n in (1, 3):
        for row in decode([Packet(packet, offset=0)] * n).alerts["lsst"].to_pylist():
            assert row["det_candid"] == [10**12 + i for i in range(50)] + [record["diaSourceId"]]


# --- values: NaN / inf magnitudes, missing fields, huge histories ---------------------------------------------

FINK = next(b for b in pool() if b.kind == "schemaless"  # one with past detections and upper limits
            and {p["candid"] is None for p in b.records[0]["prv_candidates"] or []} == {True, False})
FINK_SCHEMA = json.loads(FINK.key)
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])


def encode(record: dict, schema: dict = FINK_SCHEMA) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), record)
    return buf.getvalue()


def same(a, b) -> bool:
    return (a is None and b is None) or (isinstance(a, float) and isinstance(b, float) and math.isnan(a)
                                         and math.isnan(b)) or a == b


@settings(max_examples=25, deadline=None)
@given(field=st.sampled_from(["magpsf", "sigmapsf", "diffmaglim", "prv_magpsf"]), value=NON_FINITE)
def test_non_finite_magnitudes_are_kept_as_sent_and_never_reach_a_feature_as_inf(field, value):
    record = copy.deepcopy(FINK.records[0])
    if field == "prv_magpsf":
        detection = next(p for p in record["prv_candidates"] if p["candid"] is not None)
        detection["magpsf"] = value
    else:
        record["candidate"][field] = value
    result = decode([Packet(encode(record), schema=FINK.key, offset=0)])

    assert result.dead_letters == []
    row = result.alerts["ztf"].to_pylist()[0]
    expected = ap.expected_ztf(record)
    for name in ("candid", "objectId", "jd", "ra", "dec", "magpsf", "sigmapsf", "diffmaglim"):
        assert same(row[name], expected.get(name, record["candidate"].get(name))), name
    assert all(same(g, w) for g, w in zip(row["det_magpsf"], expected["det_magpsf"], strict=True))
    features = compute_features(result.alerts["ztf"])
    values = np.array([features.column(c).to_pylist() for c in FEATURE_COLUMNS], dtype=float)
    assert not np.isinf(values).any()
    assert features.column("ndets")[0].as_py() == sum(math.isfinite(m) for m in row["det_magpsf"])


@settings(max_examples=15, deadline=None)
@given(field=st.sampled_from(["ra", "dec", "jd"]), value=NON_FINITE)
def test_non_finite_position_or_time_is_a_dead_letter(field, value):
    record = copy.deepcopy(FINK.records[0])
    record["candidate"][field] = value
    result = decode([Packet(encode(record), schema=FINK.key, offset=0)])
    assert result.n_alerts == 0 and "implausible" in result.dead_letters[0][1]


@settings(max_examples=15, deadline=None)
@given(value=st.sampled_from([math.nan, math.inf, -math.inf, 0.0]))
def test_rubin_non_finite_or_zero_flux_keeps_the_flux_and_no_feature_is_inf(value):
    base = next(b for b in pool() if b.kind == "confluent")
    record = copy.deepcopy(base.records[0])
    record["diaSource"]["psfFlux"] = value
    wire_id = int.from_bytes(base.value[1:5], "big")
    schema = json.loads(lsst.schema_for_id(wire_id))
    packet = b"\x00" + wire_id.to_bytes(4, "big") + encode(record, schema)
    result = decode([Packet(packet, offset=0)])

    assert result.dead_letters == []
    row = result.alerts["lsst"].to_pylist()[0]
    assert same(row["psfFlux"], value) and row["candid"] == record["diaSourceId"]
    assert row["magpsf"] is None or not math.isfinite(row["magpsf"])  # no magnitude from a flux that has none
    features = compute_features(result.alerts["lsst"])
    assert not np.isinf(np.array([features.column(c).to_pylist() for c in FEATURE_COLUMNS], dtype=float)).any()


IDENTITY = {"ra", "dec", "jd"}
CANDIDATE_FIELDS = ["ra", "dec", "jd", "candid", "magpsf", "sigmapsf", "drb", "rb", "fid", "isdiffpos"]


def without(schema: dict, record: dict, top: set[str], candidate: set[str]) -> tuple[dict, dict]:
    schema, record = copy.deepcopy(schema), copy.deepcopy(record)
    schema["fields"] = [f for f in schema["fields"] if f["name"] not in top]
    cand = next(f for f in schema["fields"] if f["name"] == "candidate")
    cand_type = cand["type"] if isinstance(cand["type"], dict) else next(t for t in cand["type"] if isinstance(t, dict))
    cand_type["fields"] = [f for f in cand_type["fields"] if f["name"] not in candidate]
    for name in top:
        del record[name]
    for name in candidate:
        del record["candidate"][name]
    return schema, record


@settings(max_examples=40, deadline=None)
@given(top=st.sets(st.sampled_from(["candid", "objectId"])), candidate=st.sets(st.sampled_from(CANDIDATE_FIELDS)))
def test_missing_fields_give_nulls_or_a_dead_letter_when_the_alert_cannot_be_identified(top, candidate):
    schema, record = without(FINK_SCHEMA, FINK.records[0], top, candidate)
    result = decode([Packet(encode(record, schema), schema=json.dumps(schema).encode(), offset=0)])

    unidentifiable = bool(candidate & IDENTITY) or "objectId" in top or {"candid"} <= top and "candid" in candidate
    if unidentifiable:
        assert result.n_alerts == 0 and result.dead_letters[0][1]
        return
    assert result.dead_letters == []
    row = result.alerts["ztf"].to_pylist()[0]
    original = FINK.records[0]
    assert row["candid"] == original["candid"] and row["objectId"] == original["objectId"]
    assert (row["ra"], row["dec"], row["jd"]) == tuple(original["candidate"][k] for k in ("ra", "dec", "jd"))
    for name in candidate - {"candid"}:
        assert row["band" if name == "fid" else name] is None, name
    for name in {"magpsf", "sigmapsf", "drb", "rb"} - candidate:
        assert row[name] == original["candidate"][name], name


@pytest.mark.parametrize("n", [4_000])  # ZTF sends at most ~100, Rubin a few hundred
def test_huge_history_decodes_to_the_thirty_day_window_beside_normal_packets(n):
    record = copy.deepcopy(FINK.records[0])
    jd = record["candidate"]["jd"]
    template = next(p for p in record["prv_candidates"] if p["candid"] is not None)
    limit = next(p for p in record["prv_candidates"] if p["candid"] is None)
    record["prv_candidates"] = [
        {**(template if i % 2 else limit), "jd": jd - 90 + 90 * i / n, **({"candid": 10**15 + i} if i % 2 else {})}
        for i in range(n)]
    others = [b for b in pool() if b.kind == "schemaless" and b is not FINK]
    result = decode([Packet(encode(record), schema=FINK.key, offset=0)]
                    + [Packet(b.value, schema=b.key, offset=i + 1) for i, b in enumerate(others)])

    assert result.dead_letters == []
    rows = rows_by_packet(result)
    check_rows(rows[0], [ap.expected_ztf(record)])
    assert len(rows[0][0]["det_jd"]) + len(rows[0][0]["ul_jd"]) == sum(
        jd - 30 <= p["jd"] < jd for p in record["prv_candidates"]) + 1
    for i, b in enumerate(others):
        check_rows(rows[i + 1], b.expected())


# --- a whole poll -----------------------------------------------------------------------------------------------

REPLAYABLE = [b for b in pool() if b.kind != "schemaless"]  # a replayed file has no Kafka key to carry a schema


@st.composite
def replay_packet(draw):
    """(base, bytes, bad?): a real packet, or one made bad in a way that must end in the DLQ."""
    base = draw(st.sampled_from(REPLAYABLE))
    kind = draw(st.sampled_from(["good", "truncate", "bad_magic"] + (["unknown_id"] if base.kind == "confluent" else [])))
    data = bytearray(base.value)
    if kind == "truncate":
        cut = draw(st.integers(0, len(data) - 1))
        data = data[:cut] if base.kind == "confluent" else data[: min(cut, len(avro.split_container(base.value).schema))]
    elif kind == "bad_magic":
        data[0] = draw(st.integers(1, 255)) if base.kind == "confluent" else data[0] ^ 0xFF
    elif kind == "unknown_id":
        data[1:5] = draw(st.integers(0, 2**32 - 1).filter(lambda i: i not in BUNDLED_IDS)).to_bytes(4, "big")
    return base, bytes(data), kind != "good"


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(replay_packet(), min_size=1, max_size=6))
def test_a_poll_writes_every_good_alert_once_and_every_bad_packet_to_the_dlq(batch):
    import tempfile
    from pathlib import Path

    from skysift.config import Settings
    from skysift.ingest.core import IngestStage
    from skysift.ingest.settings import IngestSettings
    from skysift.store.local import LocalStore

    with tempfile.TemporaryDirectory() as tmp:
        packets = Path(tmp, "packets")
        packets.mkdir()
        for i, (_, data, _) in enumerate(batch):
            Path(packets, f"{i:03d}.bin").write_bytes(data)
        store = LocalStore(Path(tmp, "store"))
        stage = IngestStage(Settings(store_url=str(store.root)), store, IngestSettings(replay_path=str(packets)))
        result = stage.poll()

        good = {e["candid"] for base, _, bad in batch if not bad for e in base.expected()}
        written = [c for k in store.list_keys("alerts/") for c in store.read_table(k).column("candid").to_pylist()]
        assert sorted(written) == sorted(good)
        dlq = store.read_table(result.dlq_key).to_pylist() if result.dlq_key else []
        assert [(d["offset"], d["raw"]) for d in dlq] == [(i, data) for i, (_, data, bad) in enumerate(batch) if bad]
        assert all(d["error"] for d in dlq)
        assert stage.poll().n_messages == 0  # the cursor moved past the bad packets too
