"""Feature set 2: every band of the survey on fluxes, colours, rise and decline, periodicity, offline context.

Why: feature set 1 has light-curve features for g and r only, in magnitudes. A Rubin alert in u, i, z or y had no
light-curve feature at all, and negative-flux detections (common in difference imaging) had no magnitude, so
Rubin alerts sat at p ~ 0.5. Here every band is computed on difference fluxes in nJy, negative ones kept:
Rubin's own ``psfFlux``; for ZTF the flux of ``magpsf`` on the same AB scale, signed by ``isdiffpos``
(``±10^(-0.4 (magpsf - 31.4))``, error ``|flux| sigmapsf / 1.0857``). The columns are the union of the surveys'
bands (ZTF g, r, i; Rubin u, g, r, i, z, y), so one model can be trained on both; a band a survey lacks is NaN.

Columns (float64, NaN where a value cannot be computed):

- ``ra``, ``dec``, ``drb``, ``ndets``, ``nnondets``: as in feature set 1;
  ``time_since_first_days``: the alert's time minus its first detection in the 30-day history (all bands).
- Per band ``b`` in u, g, r, i, z, y:
  ``ndet_b`` (detections with a finite flux and a positive error; 0, never NaN), ``peak_flux_b`` (nJy),
  from the ``light-curve`` package: ``amplitude_b``, ``weighted_mean_b`` (1 point), ``standard_deviation_b``,
  ``stetson_k_b``, ``excess_variance_b`` (2 points), ``linear_fit_slope_b``, ``linear_fit_slope_sigma_b``,
  ``linear_fit_reduced_chi2_b`` (3 points), ``periodogram_period_b``, ``periodogram_s_to_n_b`` (Lomb-Scargle
  peak on at least 5 distinct times; the period search of a variable star);
  ``rise_rate_b`` and ``decline_rate_b`` in mag/day over positive fluxes: how fast it brightened from its first
  detection to its peak (NaN when the peak is the first point), and faded from the peak to its last detection.
- Colours between neighbouring bands (``u_g``, ``g_r``, ``r_i``, ``i_z``, ``z_y``), AB magnitudes of positive fluxes:
  ``colour_<a>_<b>_latest``, the latest detection of each band when they are at most ``COLOUR_MAX_GAP_DAYS``
  apart; ``colour_<a>_<b>_peak``, at each band's peak.
- Context from the enrichment (NaN when it has none): ``sep_arcsec`` and ``ebv`` as in feature set 1;
  ``sherlock_<class>`` (1/0 for SN, NT, AGN, CV, VS, BS, ORPHAN, UNCLEAR; NaN unless Sherlock answered);
  ``host_separation_arcsec``, ``host_distance_mpc``, ``host_offset_kpc`` (offline Mangrove match);
  ``varstar_match`` (1/0; NaN when the offline catalogues were not searched), ``varstar_separation_arcsec``.
- Flag ``no_positive_detection``, as in feature set 1.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from skysift.alerts.surveys.lsst import AB_ZEROPOINT_NJY, MAG_ERR
from skysift.features.core import (
    FLAG_COLUMNS,
    VERSION_METADATA_KEY,
    Detections,
    _join_enriched,
    _light_curves,
    _list_array,
    flatten_detections,
)

FEATURE_SET_VERSION = "2"
BANDS = ("u", "g", "r", "i", "z", "y")  # ZTF g, r, i and Rubin u..y: the union, so both surveys share the columns
COLOUR_PAIRS = tuple(zip(BANDS[:-1], BANDS[1:]))
COLOUR_MAX_GAP_DAYS = 1.0
PERIODOGRAM_MIN_POINTS = 5
SHERLOCK_CLASSES = ("SN", "NT", "AGN", "CV", "VS", "BS", "ORPHAN", "UNCLEAR")

# light-curve feature name -> column stem, with the fewest points it is defined on
LC_FEATURES = {"amplitude": ("amplitude", 1), "weighted_mean": ("weighted_mean", 1),
               "standard_deviation": ("standard_deviation", 2), "stetson_K": ("stetson_k", 2),
               "excess_variance": ("excess_variance", 2), "linear_fit_slope": ("linear_fit_slope", 3),
               "linear_fit_slope_sigma": ("linear_fit_slope_sigma", 3),
               "linear_fit_reduced_chi2": ("linear_fit_reduced_chi2", 3)}
PERIODOGRAM_FEATURES = {"periodogram_period_0": "periodogram_period", "periodogram_period_s_to_n_0": "periodogram_s_to_n"}
MIN_POINTS = {stem: points for stem, points in LC_FEATURES.values()} | dict.fromkeys(
    PERIODOGRAM_FEATURES.values(), PERIODOGRAM_MIN_POINTS)
BAND_STEMS = ["ndet", "peak_flux", *MIN_POINTS, "rise_rate", "decline_rate"]

ENRICHED_COLUMNS = ("candid", "sherlock_separation_arcsec", "sherlock_classification", "sherlock_status", "ebv",
                    "host_separation_arcsec", "host_distance_mpc", "host_offset_kpc", "varstar_type",
                    "varstar_separation_arcsec", "offline_catalogs")
FLUX_ALERT_COLUMNS = ("det_psfflux", "det_psffluxerr")  # Rubin's; read when present

FEATURE_COLUMNS: list[str] = [
    "ra", "dec", "drb", "ndets", "nnondets", "time_since_first_days",
    *[f"{stem}_{band}" for band in BANDS for stem in BAND_STEMS],
    *[f"colour_{a}_{b}_{when}" for a, b in COLOUR_PAIRS for when in ("latest", "peak")],
    "sep_arcsec", "ebv", *[f"sherlock_{c.lower()}" for c in SHERLOCK_CLASSES],
    "host_separation_arcsec", "host_distance_mpc", "host_offset_kpc", "varstar_match", "varstar_separation_arcsec",
]

FEATURES_SCHEMA = pa.schema(
    [pa.field("candid", pa.int64(), nullable=False)]
    + [pa.field(name, pa.float64()) for name in FEATURE_COLUMNS]
    + [pa.field(name, pa.bool_(), nullable=False) for name in FLAG_COLUMNS],
    metadata={"skysift.table": "features", VERSION_METADATA_KEY: FEATURE_SET_VERSION},
)


def _extractors():
    import light_curve as lc

    return (lc.Extractor(lc.Amplitude(), lc.WeightedMean(), lc.StandardDeviation(), lc.StetsonK(),
                         lc.ExcessVariance(), lc.LinearFit()),
            lc.Extractor(lc.Periodogram(peaks=1)))


def _numeric(alerts: pa.Table, name: str) -> np.ndarray:
    return _list_array(alerts.column(name)).cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)


def _fluxes(alerts: pa.Table, p: Detections) -> tuple[np.ndarray, np.ndarray]:
    """Difference flux and error in nJy per detection: Rubin's psfFlux where given, else from magpsf signed by isdiffpos."""
    with np.errstate(over="ignore", invalid="ignore"):
        flux = np.where(p.positive, 1.0, -1.0) * 10.0 ** (-0.4 * (p.m - AB_ZEROPOINT_NJY))
        err = np.abs(flux) * p.sigma / MAG_ERR
    if all(c in alerts.column_names for c in FLUX_ALERT_COLUMNS):
        given, given_err = p.flat(alerts, "det_psfflux"), p.flat(alerts, "det_psffluxerr")
        if len(given) == len(flux):
            has = np.isfinite(given)
            flux, err = np.where(has, given, flux), np.where(has, given_err, err)
    return flux, err


def _first_last_peak(t, flux, parent, mask, n):
    """Per alert, over the points in ``mask`` (flat arrays sorted by parent then t): positions of the first, last and
    brightest point, -1 where an alert has none."""
    idx = np.flatnonzero(mask)
    first, last, peak = np.full(n, -1), np.full(n, -1), np.full(n, -1)
    if len(idx) == 0:
        return first, last, peak
    p = parent[idx]  # sorted: the flat arrays are in alert order
    starts = np.flatnonzero(np.r_[True, p[1:] != p[:-1]])
    ends = np.r_[starts[1:], len(p)] - 1
    first[p[starts]] = idx[starts]
    last[p[ends]] = idx[ends]
    peak[p[ends]] = idx[np.lexsort((flux[idx], p))][ends]  # within each alert, brightest last
    return first, last, peak


def _take(values: np.ndarray, where: np.ndarray) -> np.ndarray:
    return np.where(where >= 0, values[np.maximum(where, 0)], np.nan)


def _many(extractor, t, flux, err, parent, mask, n) -> np.ndarray:
    """``extractor.many`` over the alerts having points in ``mask`` only (the periodogram panics on empty curves)."""
    out = np.full((n, len(extractor.names)), np.nan)
    rows = np.unique(parent[mask])
    if len(rows):
        local = np.searchsorted(rows, parent[mask])
        curves = _light_curves(t[mask], flux[mask], err[mask], local, np.ones(len(local), bool), len(rows))
        values = extractor.many(curves, arrow_fields={"t": "t", "m": "m", "sigma": "sigma"}, fill_value=np.nan,
                                sorted=True, check=False, n_jobs=1)
        out[rows] = np.asarray(values, dtype=np.float64).reshape(len(rows), len(extractor.names))
    return out


def _curve_columns(t, flux, err, mag, curve, n_curves, extractors) -> dict[str, np.ndarray]:
    """Per light curve (``curve``: its id per point, points sorted by curve then time): the BAND_STEMS columns, and
    the time and magnitude of the latest and of the peak positive detection (``t_last``, ``m_last``, ...)."""
    basic, periodogram = extractors
    everything = np.ones(len(t), bool)
    counts = np.bincount(curve, minlength=n_curves)
    columns = {"ndet": counts.astype(np.float64)}
    values = _many(basic, t, flux, err, curve, everything, n_curves)
    for i, name in enumerate(basic.names):
        stem, points = LC_FEATURES[name]
        columns[stem] = np.where(counts >= points, values[:, i], np.nan)
    # the periodogram needs distinct times: a repeated time (the same visit sent twice) is kept once
    distinct = np.ones(len(t), bool)
    distinct[1:] = (curve[1:] != curve[:-1]) | (t[1:] != t[:-1])
    enough = np.bincount(curve[distinct], minlength=n_curves) >= PERIODOGRAM_MIN_POINTS
    values = _many(periodogram, t, flux, err, curve, distinct & enough[curve], n_curves)
    for i, name in enumerate(periodogram.names):
        columns[PERIODOGRAM_FEATURES[name]] = values[:, i]

    _, _, peak_any = _first_last_peak(t, flux, curve, everything, n_curves)
    columns["peak_flux"] = _take(flux, peak_any)
    first, last, peak = _first_last_peak(t, flux, curve, flux > 0, n_curves)
    t_first, m_first = _take(t, first), _take(mag, first)
    columns |= {"t_last": _take(t, last), "m_last": _take(mag, last), "t_peak": _take(t, peak), "m_peak": _take(mag, peak)}
    with np.errstate(invalid="ignore", divide="ignore"):
        columns["rise_rate"] = np.where(columns["t_peak"] > t_first,
                                        (m_first - columns["m_peak"]) / (columns["t_peak"] - t_first), np.nan)
        columns["decline_rate"] = np.where(columns["t_last"] > columns["t_peak"],
                                           (columns["m_last"] - columns["m_peak"]) / (columns["t_last"] - columns["t_peak"]),
                                           np.nan)
    return columns


def _band_columns(p: Detections, flux, err, mag, usable) -> dict[str, np.ndarray]:
    """The per-band columns of every alert, ``<stem>_<band>`` (plus ``t_last_<band>`` etc. for the colours).

    Each (band, alert) light curve is one curve of one batched computation: the points are put in curve order
    once, so every extractor runs once for all bands, not once per band.
    """
    n = p.n
    code = np.full(len(p.t), -1)
    for i, band in enumerate(BANDS):
        code[p.band == band] = i
    chosen = np.flatnonzero(usable & (code >= 0))
    curve_of = code[chosen] * n + p.parent[chosen]
    order = chosen[np.argsort(curve_of, kind="stable")]  # stable: time order within each curve is kept
    curve = code[order] * n + p.parent[order]
    per_curve = _curve_columns(p.t[order], flux[order], err[order], mag[order], curve, len(BANDS) * n, _extractors())
    return {f"{stem}_{band}": values[i * n:(i + 1) * n]
            for stem, values in per_curve.items() for i, band in enumerate(BANDS)}


def _context_columns(candid: pa.Array, enriched: pa.Table | None, n: int) -> dict[str, np.ndarray]:
    columns = {name: _join_enriched(candid, enriched, name, n)
               for name in ("ebv", "host_separation_arcsec", "host_distance_mpc", "host_offset_kpc",
                            "varstar_separation_arcsec")}
    columns["sep_arcsec"] = _join_enriched(candid, enriched, "sherlock_separation_arcsec", n)

    def text(name: str) -> np.ndarray:
        if enriched is None or name not in enriched.column_names:
            return np.full(n, None, dtype=object)
        where = pc.index_in(candid, value_set=_list_array(enriched.column("candid")))
        return _list_array(enriched.column(name)).cast(pa.string()).take(where).to_numpy(zero_copy_only=False)

    answered = text("sherlock_classification")
    has_class = np.array([c is not None for c in answered])
    for cls in SHERLOCK_CLASSES:
        columns[f"sherlock_{cls.lower()}"] = np.where(has_class, answered == cls, np.nan).astype(np.float64)
    searched = np.array([s is not None for s in text("offline_catalogs")])
    matched = np.array([s is not None for s in text("varstar_type")])
    columns["varstar_match"] = np.where(searched, matched, np.nan).astype(np.float64)
    return columns


def compute_features(alerts: pa.Table, enriched: pa.Table | None = None, *, threads: int = 1) -> pa.Table:
    """Feature set 2 of ``alerts`` (ALERTS_SCHEMA), one row per alert in the same order, as FEATURES_SCHEMA.

    Vectorised like feature set 1: the light curves are flattened once, and each band's light-curve features come
    from one ``Extractor.many`` call over the alerts observed in it. ``threads`` is accepted for the same call
    signature; the light-curve package runs on one thread here (a replica is one core).
    """
    p = flatten_detections(alerts)
    n, candid, parent, t, m = p.n, p.candid, p.parent, p.t, p.m
    flux, err = _fluxes(alerts, p)
    with np.errstate(invalid="ignore", divide="ignore"):
        usable = np.isfinite(t) & np.isfinite(flux) & np.isfinite(err) & (err > 0)
        mag = np.where(flux > 0, -2.5 * np.log10(np.where(flux > 0, flux, 1.0)) + AB_ZEROPOINT_NJY, np.nan)

    detected = np.isfinite(m) | np.isfinite(flux)
    first_t = np.full(n, np.inf)
    np.minimum.at(first_t, parent[detected], t[detected])
    last_t = np.full(n, -np.inf)
    np.maximum.at(last_t, parent[detected], t[detected])
    columns: dict[str, np.ndarray] = {
        "ra": _numeric(alerts, "ra"), "dec": _numeric(alerts, "dec"), "drb": _numeric(alerts, "drb"),
        "ndets": np.bincount(parent[detected], minlength=n).astype(np.float64),
        "nnondets": pc.list_value_length(_list_array(alerts.column("ul_jd"))).fill_null(0)
        .to_numpy(zero_copy_only=False).astype(np.float64),
        "time_since_first_days": np.where(np.isfinite(first_t), last_t - first_t, np.nan),
    }
    columns |= _band_columns(p, flux, err, mag, usable)
    for a, b in COLOUR_PAIRS:
        with np.errstate(invalid="ignore"):
            near = np.abs(columns[f"t_last_{a}"] - columns[f"t_last_{b}"]) <= COLOUR_MAX_GAP_DAYS
        columns[f"colour_{a}_{b}_latest"] = np.where(near, columns[f"m_last_{a}"] - columns[f"m_last_{b}"], np.nan)
        columns[f"colour_{a}_{b}_peak"] = columns[f"m_peak_{a}"] - columns[f"m_peak_{b}"]
    columns.update(_context_columns(candid, enriched, n))
    flags = {"no_positive_detection": np.bincount(parent[np.isfinite(m) & p.positive], minlength=n) == 0}
    arrays = ([candid] + [pa.array(columns[c], pa.float64()) for c in FEATURE_COLUMNS]
              + [pa.array(flags[c]) for c in FLAG_COLUMNS])
    return pa.Table.from_arrays(arrays, schema=FEATURES_SCHEMA)
