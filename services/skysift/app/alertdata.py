"""What the label page shows about one queued alert, read from the store by the queue item's ``alerts_key``.

The alerts row carries the light curve; stamps, enrichment and features are sibling batches with the same
stem (``cutouts/``, ``enriched/``, ``features/``) and each may be absent: the page then says so instead of
failing. Batches are immutable once written, so a bounded cache of whole tables is safe and spares the
store a read per alert.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from urllib.parse import urlencode

import pyarrow as pa
import pyarrow.compute as pc

from skysift.alerts import surveys
from skysift.errors import NotFound
from skysift.store import keys

CONTEXT_STAGES = ("enriched", "features")
CUTOUT_COLUMNS = {"science": "cutout_science", "template": "cutout_template", "difference": "cutout_difference"}


class BatchCache:
    """Whole parquet batches by key, least recently used out first; a missing batch is remembered as None."""

    def __init__(self, store, max_tables: int = 16):
        self.store = store
        self.max_tables = max_tables
        self._tables: OrderedDict[str, pa.Table | None] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> pa.Table | None:
        with self._lock:
            if key in self._tables:
                self._tables.move_to_end(key)
                return self._tables[key]
        try:
            table = self.store.read_table(key)
        except NotFound:
            table = None
        with self._lock:
            self._tables[key] = table
            while len(self._tables) > self.max_tables:
                self._tables.popitem(last=False)
        return table


def _row(table: pa.Table | None, candid: int) -> dict | None:
    if table is None or "candid" not in table.column_names:
        return None
    rows = table.filter(pc.equal(table["candid"], pa.scalar(candid, pa.int64()))).slice(0, 1).to_pylist()
    return rows[0] if rows else None


@dataclass
class AlertView:
    """One alert with everything around it; ``cutouts`` is None when the poll kept no stamps."""

    alert: dict
    cutouts: dict[str, bytes] | None
    context: dict = field(default_factory=dict)  # enrichment and feature columns, when those batches exist
    missing: list[str] = field(default_factory=list)  # sibling stages that were not found


def load_alert(cache: BatchCache, alerts_key: str, candid: int) -> AlertView:
    """The alert ``candid`` from the batch at ``alerts_key`` and its siblings; NotFound if the alert is not there."""
    batch = keys.parse_batch(alerts_key, stage="alerts")
    alert = _row(cache.get(alerts_key), candid)
    if alert is None:
        raise NotFound(f"alert {candid} not found in {alerts_key}")
    cutout_row = _row(cache.get(str(batch.sibling("cutouts"))), candid)
    cutouts = None
    if cutout_row is not None:
        cutouts = {name: cutout_row[col] for name, col in CUTOUT_COLUMNS.items() if cutout_row.get(col)}
    context: dict = {}
    missing = []
    for stage in CONTEXT_STAGES:
        row = _row(cache.get(str(batch.sibling(stage))), candid)
        if row is None:
            missing.append(stage)
        else:
            context.update({k: v for k, v in row.items() if k not in context})
    return AlertView(alert, cutouts or None, context, missing)


HISTORY_COLUMNS = ["candid", "objectId", "jd", "band", "magpsf", "sigmapsf", "drb", "det_jd", "det_band",
                   "det_magpsf", "det_sigmapsf", "ul_jd", "ul_band", "ul_diffmaglim"]
MJD_OFFSET = 2400000.5


@dataclass
class ObjectHistory:
    """Every stored alert of one object (oldest first) and the union of their light curves."""

    object_id: str
    alerts: list[dict]  # candid, jd, band, magpsf, sigmapsf, drb, alerts_key
    curve_row: dict  # an alert-like row whose det_*/ul_* lists hold every point any of the alerts carried
    batches_read: int


def object_history(store, survey: str, object_id: str, current_jd: float | None = None,
                   max_batches: int = 400) -> ObjectHistory:
    """The object's alerts across every stored alerts batch of ``survey`` (the newest ``max_batches``), not only
    the history one alert carries (30 days for ZTF). Points repeated across alerts count once."""
    keys_found = [k for k in store.list_keys(f"alerts/survey={survey}/") if k.endswith("_alerts.parquet")]
    keys_read = keys_found[-max_batches:]
    alerts, points, limits = [], {}, {}
    for key in keys_read:
        try:
            table = store.read_table(key, columns=HISTORY_COLUMNS)
        except NotFound:  # removed since the listing
            continue
        table = table.filter(pc.equal(table["objectId"], object_id))
        for row in table.to_pylist():
            alerts.append({k: row[k] for k in ("candid", "jd", "band", "magpsf", "sigmapsf", "drb")} | {"alerts_key": key})
            for jd, band, mag, err in zip(row["det_jd"] or [], row["det_band"] or [], row["det_magpsf"] or [],
                                          row["det_sigmapsf"] or []):
                points[(round(jd, 5), band)] = (jd, band, mag, err)
            for jd, band, lim in zip(row["ul_jd"] or [], row["ul_band"] or [], row["ul_diffmaglim"] or []):
                limits[(round(jd, 5), band)] = (jd, band, lim)
    alerts.sort(key=lambda a: a["jd"] or 0.0)
    det = sorted(points.values())
    ul = sorted(v for k, v in limits.items() if k not in points)
    curve_row = {"jd": current_jd if current_jd is not None else (alerts[-1]["jd"] if alerts else None),
                 "det_jd": [d[0] for d in det], "det_band": [d[1] for d in det], "det_magpsf": [d[2] for d in det],
                 "det_sigmapsf": [d[3] for d in det], "ul_jd": [u[0] for u in ul], "ul_band": [u[1] for u in ul],
                 "ul_diffmaglim": [u[2] for u in ul]}
    return ObjectHistory(object_id, alerts, curve_row, len(keys_read))


def history_table(history: ObjectHistory, current_candid: int | None) -> list[dict]:
    """One row per alert of the object for the page: MJD and calendar date, the current alert marked."""
    from datetime import UTC, datetime, timedelta

    epoch = datetime(1858, 11, 17, tzinfo=UTC)
    rows = []
    for a in history.alerts:
        mjd = a["jd"] - MJD_OFFSET if a["jd"] is not None else None
        rows.append({"": "▶ this alert" if a["candid"] == current_candid else "", "candid": str(a["candid"]),
                     "MJD": None if mjd is None else round(mjd, 4),
                     "date (UTC)": "" if mjd is None else f"{epoch + timedelta(days=mjd):%Y-%m-%d %H:%M}",
                     "band": a["band"], "mag": _fmt(a["magpsf"], 2), "±": _fmt(a["sigmapsf"], 2),
                     "drb": _fmt(a["drb"])})
    return rows


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def sexagesimal(ra: float, dec: float) -> str:
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    c = SkyCoord(ra * u.deg, dec * u.deg)
    return f"{c.ra.to_string(u.hour, sep=':', precision=2, pad=True)} {c.dec.to_string(sep=':', precision=1, alwayssign=True, pad=True)}"


def facts(view: AlertView, item=None) -> list[tuple[str, str]]:
    """(name, value) rows for the facts panel: identity, position, quality, context, and why it was queued."""
    a, ctx = view.alert, view.context
    rows = [("candid", str(a["candid"])), ("objectId", a["objectId"]), ("survey", a.get("survey") or "–")]
    if a.get("ra") is not None and a.get("dec") is not None:
        rows.append(("ra, dec (deg)", f"{a['ra']:.6f}, {a['dec']:+.6f}"))
        rows.append(("ra, dec", sexagesimal(a["ra"], a["dec"])))
    if a.get("magpsf") is not None:
        rows.append((f"mag ({a.get('band') or '?'})", f"{_fmt(a['magpsf'], 2)} ± {_fmt(a.get('sigmapsf'), 2)}"))
    survey = _survey(a.get("survey"))
    rows.append((survey.score_name if survey else "drb", _fmt(a.get("drb"))))
    rows.append(("detections / upper limits", f"{len(a.get('det_jd') or [])} / {len(a.get('ul_jd') or [])}"))
    for name, label, digits in (("sherlock_classification", "Sherlock class", 0),
                                ("sherlock_separation_arcsec", "Sherlock separation (arcsec)", 2),
                                ("ebv", "E(B-V)", 3)):
        rows.append((label, _fmt(ctx.get(name), digits) if name in ctx else "– (not enriched)"))
    rows += offline_context(ctx)
    for name, label in (("cdsxmatch", "SIMBAD (Fink)"), ("xm_simbad_otype", "SIMBAD (Fink)"), ("tns", "TNS"),
                        ("finkclass", "Fink class"), ("ssnamenr", "nearest SSO")):
        if a.get(name) not in (None, "", "null"):
            rows.append((label, str(a[name])))
    if item is not None:
        rows.append(("model probability", _fmt(item.probability)))
        rows.append(("queued by", f"{item.strategy} (rank {item.rank}, score {_fmt(item.score)})"))
        if item.reason:
            rows.append(("why", item.reason))
    return rows


def offline_context(ctx: dict) -> list[tuple[str, str]]:
    """Host galaxy and variable star from the offline catalogues, for the alerts that have one (no token needed)."""
    rows = []
    if ctx.get("host_separation_arcsec") is not None:
        rows.append(("host galaxy (Mangrove)", f"{ctx.get('host_name') or 'unnamed'}: {_fmt(ctx['host_separation_arcsec'], 1)}\" "
                     f"away, {_fmt(ctx.get('host_distance_mpc'), 0)} Mpc, {_fmt(ctx.get('host_offset_kpc'), 1)} kpc projected"))
    if ctx.get("varstar_type") is not None:
        rows.append((f"variable star ({ctx.get('varstar_catalogue')})",
                     f"{ctx['varstar_type']} at {_fmt(ctx.get('varstar_separation_arcsec'), 2)}\""))
    return rows


def _survey(name: str | None) -> surveys.Survey | None:
    """The survey of a stored row, None for a name skysift no longer knows (the page still shows the row)."""
    return surveys.get(name) if name in surveys.names() else None


def links(object_id: str, survey: str, ra: float | None, dec: float | None) -> dict[str, str]:
    """Pages scanners open next: the broker pages of the object (the survey's own, see
    :mod:`skysift.alerts.surveys`), and finders by coordinates (any survey)."""
    known = _survey(survey)
    out = known.links(object_id) if known else {}
    if ra is not None and dec is not None:
        out["Legacy Survey viewer"] = "https://www.legacysurvey.org/viewer?" + urlencode(
            {"ra": f"{ra:.6f}", "dec": f"{dec:.6f}", "layer": "ls-dr10", "zoom": 16})
        out["TNS (5 arcsec)"] = "https://www.wis-tns.org/search?" + urlencode(
            {"ra": f"{ra:.6f}", "decl": f"{dec:+.6f}", "radius": 5, "coords_unit": "arcsec"})
        out["SIMBAD (5 arcsec)"] = "https://simbad.cds.unistra.fr/simbad/sim-coo?" + urlencode(
            {"Coord": f"{ra:.6f} {dec:+.6f}", "CooFrame": "ICRS", "Radius": 5, "Radius.unit": "arcsec"})
    return out
