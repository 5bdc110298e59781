"""Real alert packets in each wire format, built from the real alerts in tests/data and demo/ (nothing invented).

- ZTF Avro containers: the files as they are.
- Fink's Kafka format: key = the writer schema as JSON, value = the record re-encoded schemaless (as Fink does).
- Rubin Confluent wire format: 0x00 + 4-byte schema id + the record encoded schemaless with the bundled schema.
  Fink's re-serialisation fills absent records (diaObject, ssSource, ...) with all-null structs; those are
  turned back into nulls, as Rubin sends them.
Each builder returns the decoded record beside the packet so tests can check fields against it.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import fastavro
import pyarrow as pa

from skysift.alerts.schema import HISTORY_DAYS
from skysift.alerts.surveys import lsst

DATA = Path(__file__).parent / "data" / "alerts"
DEMO = Path(__file__).parent.parent / "demo" / "alerts"
ZTF_CONTAINERS = sorted((DATA / "ztf" / "avro").rglob("*.avro"))
FINK_CONTAINERS = sorted((DATA / "ztf" / "fink_labeled" / "avro").rglob("*.avro"))
RUBIN_V9 = sorted((DEMO / "lsst").glob("*.avro"))
RUBIN_V10 = DATA / "lsst" / "real" / "fink-client_ftransfer" / "part-2-918301.avro"


@dataclass
class Made:
    value: bytes
    record: dict
    key: bytes | None = None


def records(path: Path) -> tuple[dict, list[dict]]:
    with open(path, "rb") as fh:
        reader = fastavro.reader(fh)
        return reader.writer_schema, list(reader)


def ztf_containers(paths: list[Path]) -> list[Made]:
    """One packet per file (a file may hold several alerts: its first record is given)."""
    return [Made(p.read_bytes(), records(p)[1][0]) for p in paths]


def fink_packets(paths: list[Path] = FINK_CONTAINERS) -> list[Made]:
    out = []
    for path in paths:
        schema, recs = records(path)
        key = json.dumps(schema).encode()
        parsed = fastavro.parse_schema(schema)
        for rec in recs:
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, parsed, rec)
            out.append(Made(buf.getvalue(), rec, key))
    return out


def _nullify_empty(rec: dict) -> dict:
    return {k: None if isinstance(v, dict) and all(x is None for x in v.values()) else v for k, v in rec.items()}


def rubin_wire(recs: list[dict], wire_id: int) -> list[Made]:
    parsed = fastavro.parse_schema(json.loads(lsst.schema_for_id(wire_id)))
    out = []
    for rec in recs:
        rec = _nullify_empty(rec)
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, rec)
        out.append(Made(b"\x00" + wire_id.to_bytes(4, "big") + buf.getvalue(), rec))
    return out


@cache
def rubin_v9(n: int | None = None) -> list[Made]:
    return rubin_wire([r for p in RUBIN_V9[:n] for r in records(p)[1]], 900)


@cache
def rubin_v10(wire_id: int = 1000) -> list[Made]:
    """The 2026 LSSTCam alerts; 11.0 has the same fields as 10.0, so they also make valid 1100 packets."""
    return rubin_wire(records(RUBIN_V10)[1], wire_id)


# expected alerts-table values, computed per alert in plain Python from the packet's record

def row_by_candid(table: pa.Table, candid: int) -> dict:
    rows = [r for r in table.to_pylist() if r["candid"] == candid]
    assert len(rows) == 1, f"{candid} found {len(rows)} times"
    return rows[0]


def close(a, b) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and math.isclose(a, b, rel_tol=1e-6))


def expected_ztf(rec: dict) -> dict:
    cand = rec["candidate"]
    window = [p for p in (rec.get("prv_candidates") or []) if cand["jd"] - HISTORY_DAYS <= p["jd"] < cand["jd"]]
    dets = sorted([p for p in window if p.get("candid") is not None] + [cand], key=lambda p: p["jd"])
    uls = sorted([p for p in window if p.get("candid") is None], key=lambda p: p["jd"])
    return dict(
        candid=rec.get("candid") or cand["candid"], objectId=rec["objectId"], jd=cand["jd"], ra=cand["ra"],
        dec=cand["dec"], band={1: "g", 2: "r", 3: "i"}[cand["fid"]], magpsf=cand["magpsf"], sigmapsf=cand["sigmapsf"],
        isdiffpos=cand["isdiffpos"] in ("t", "1"), drb=cand.get("drb"), rb=cand.get("rb"), fid=cand["fid"],
        det_jd=[p["jd"] for p in dets], det_candid=[p["candid"] for p in dets],
        det_magpsf=[p["magpsf"] for p in dets], det_sigmapsf=[p["sigmapsf"] for p in dets],
        ul_jd=[p["jd"] for p in uls], ul_diffmaglim=[p["diffmaglim"] for p in uls],
        cdsxmatch=rec.get("cdsxmatch"),
    )


def check(row: dict, expected: dict) -> None:
    for name, want in expected.items():
        got = row[name]
        if isinstance(want, float) or isinstance(got, float):
            assert close(got, want), (name, got, want)
        elif isinstance(want, list) and want and isinstance(want[0], float):
            assert len(got) == len(want) and all(close(g, w) for g, w in zip(got, want)), (name, got, want)
        else:
            assert got == want, (name, got, want)


def expected_lsst(rec: dict) -> dict:
    src = rec["diaSource"]
    jd = src["midpointMjdTai"] + 2400000.5
    prv = [p for p in (rec.get("prvDiaSources") or []) if jd - HISTORY_DAYS <= p["midpointMjdTai"] + 2400000.5 < jd]
    dets = sorted(prv + [src], key=lambda p: p["midpointMjdTai"])
    obj = (rec.get("diaObject") or {}).get("diaObjectId") or src["diaObjectId"]
    flux = src["psfFlux"]
    return dict(
        candid=rec["diaSourceId"], objectId=str(obj) if obj else f"ss{src['ssObjectId']}", jd=jd, ra=src["ra"],
        dec=src["dec"], band=src["band"], psfFlux=flux, psfFluxErr=src["psfFluxErr"],
        magpsf=-2.5 * math.log10(abs(flux)) + 31.4, sigmapsf=1.0857362047581294 * src["psfFluxErr"] / abs(flux),
        isdiffpos=not src["isNegative"], drb=src["reliability"],
        det_candid=[p["diaSourceId"] for p in dets], det_band=[p["band"] for p in dets],
        det_psfflux=[p["psfFlux"] for p in dets], det_jd=[p["midpointMjdTai"] + 2400000.5 for p in dets],
    )
