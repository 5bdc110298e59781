"""Turn Fink's test parquet files (real ZTF alerts with Fink's added values) into alerts tables.

Used until the decoders land, and afterwards to keep Fink's own ``lc_features_g``/``lc_features_r`` beside our
features for comparison. The light curve follows the alerts contract: detections (``prv_candidates`` entries
with a candid, plus the alert itself) and upper limits (entries without one), within HISTORY_DAYS, sorted by jd.
"""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from skysift.alerts.schema import HISTORY_DAYS, conform
from skysift.alerts.surveys import alerts_schema
from skysift.alerts.surveys.ztf import BANDS as ZTF_BANDS

FINK_PARQUET = Path(__file__).parent / "data" / "alerts" / "ztf" / "fink_labeled" / "parquet"

_CANDIDATE = ["jd", "ra", "dec", "fid", "magpsf", "sigmapsf", "isdiffpos", "drb", "rb", "programid", "diffmaglim",
              "magnr", "sigmagnr", "distnr", "ssdistnr", "ssmagnr", "ssnamenr", "sgscore1", "distpsnr1", "classtar",
              "fwhm", "elong", "nbad", "ndethist", "ncovhist", "jdstarthist"]
_FINK = ["cdsxmatch", "roid", "rf_snia_vs_nonia", "snn_snia_vs_nonia", "snn_sn_vs_all", "tns", "finkclass"]


def _positive(flag) -> bool | None:
    return None if flag is None else str(flag) in ("t", "1")


def _good(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def _source_behind(alert: dict) -> bool:
    """Whether a detection lies within 1.5 px of a reference-image source: Fink (fink_utils' is_source_behind)
    then computes its lc features on DC magnitudes (reference flux added), not on magpsf."""
    points = [p for p in (alert.get("prv_candidates") or []) if _good(p.get("magpsf"))] + [alert["candidate"]]
    return any(_good(p.get("distnr")) and 0 <= p["distnr"] <= 1.5 for p in points)


def _row(alert: dict) -> dict:
    cand = alert["candidate"]
    out = {"candid": alert["candid"], "objectId": alert["objectId"], "survey": "ztf",
           "schema_version": alert.get("schemavsn"), "source": "fink-test-parquet"}
    out.update({k: cand.get(k) for k in _CANDIDATE})
    out.update({k: alert.get(k) for k in _FINK})
    out["band"] = ZTF_BANDS.get(cand["fid"])
    out["isdiffpos"] = _positive(cand["isdiffpos"])
    history = [p for p in (alert.get("prv_candidates") or []) if p["jd"] <= cand["jd"]] + [cand]
    history = [p for p in history if p["jd"] >= cand["jd"] - HISTORY_DAYS]
    history.sort(key=lambda p: p["jd"])
    dets = [p for p in history if _good(p.get("candid")) and _good(p.get("magpsf"))]
    uls = [p for p in history if not _good(p.get("candid"))]
    out.update(
        det_jd=[p["jd"] for p in dets], det_band=[ZTF_BANDS.get(p["fid"]) for p in dets],
        det_magpsf=[p["magpsf"] for p in dets], det_sigmapsf=[p["sigmapsf"] for p in dets],
        det_isdiffpos=[_positive(p["isdiffpos"]) for p in dets], det_candid=[int(p["candid"]) for p in dets],
        ul_jd=[p["jd"] for p in uls], ul_band=[ZTF_BANDS.get(p["fid"]) for p in uls],
        ul_diffmaglim=[p.get("diffmaglim") for p in uls],
    )
    return out


def load_fink_alerts(limit_files: int | None = None) -> tuple[pa.Table, dict[int, dict]]:
    """Every Fink test alert as one alerts table (deduplicated by candid), and Fink's lc features by candid:
    ``{candid: {"g": {...} | None, "r": {...} | None, "source_behind": bool}}``."""
    rows, fink = [], {}
    for path in sorted(FINK_PARQUET.glob("*/*.parquet"))[:limit_files]:
        names = pq.read_schema(path).names
        wanted = [c for c in ["candid", "objectId", "schemavsn", "candidate", "prv_candidates", *_FINK,
                              "lc_features_g", "lc_features_r"] if c in names]
        for alert in pq.read_table(path, columns=wanted).to_pylist():
            if alert["candid"] in fink:
                continue
            rows.append(_row(alert))
            fink[alert["candid"]] = {"g": alert.get("lc_features_g"), "r": alert.get("lc_features_r"),
                                     "source_behind": _source_behind(alert)}
    columns = {f.name: [r.get(f.name) for r in rows] for f in alerts_schema() if f.name in rows[0]}
    table = pa.table({name: pa.array(values, type=alerts_schema().field(name).type) for name, values in columns.items()})
    return conform(table, alerts_schema()), fink
