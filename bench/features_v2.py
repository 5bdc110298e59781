"""Bench rows for feature set 2 (ZTF and Rubin) and the enrichment with the offline cross-match.

Each is measured beside a per-alert baseline in the same run, on the same alerts:
- the offline cross-match one alert at a time with astropy's ``match_coordinates_sky`` against the same
  catalogues (astropy keeps its KD-tree on the catalogue between calls, so only the per-alert work is counted);
- feature set 2 one alert at a time: each band's points pulled from the row, the same light-curve features
  called on them (what a per-alert implementation with the light-curve package does).
Kept apart from the other sections so that adding these rows touches the runner by one line.
"""

from __future__ import annotations

import time

import numpy as np

from bench.measure import timed
from bench.report import Row

N_BASELINE_XMATCH = 300  # alerts matched one at a time (~ms each)
N_BASELINE_FEATURES = 500


def _sky(table):
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    return SkyCoord(table["ra"].to_numpy() * u.deg, table["dec"].to_numpy() * u.deg)


def _per_alert_xmatch(alerts, galaxies, varstars) -> int:
    """Nearest galaxy and variable star of each alert, one alert per call (``galaxies``/``varstars``: SkyCoord)."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord, match_coordinates_sky

    from skysift.enrichment.catalogs import HOST_RADIUS_ARCSEC, VARSTAR_RADIUS_ARCSEC

    found = 0
    for ra, dec in zip(alerts.column("ra").to_pylist(), alerts.column("dec").to_pylist()):
        here = SkyCoord([ra] * u.deg, [dec] * u.deg)
        _, sep, _ = match_coordinates_sky(here, galaxies)
        found += int(sep.arcsec[0] <= HOST_RADIUS_ARCSEC)
        _, sep, _ = match_coordinates_sky(here, varstars)
        found += int(sep.arcsec[0] <= VARSTAR_RADIUS_ARCSEC)
    return found


def _per_alert_features(alerts) -> int:
    """Feature set 2's light-curve part one alert at a time (the batched code's per-alert counterpart)."""
    from skysift.features import v2

    basic, periodogram = v2._extractors()
    done = 0
    has_flux = "det_psfflux" in alerts.column_names
    for alert in alerts.to_pylist():
        bands = np.array(alert["det_band"], dtype=object)
        t = np.asarray(alert["det_jd"], dtype=float)
        if has_flux and alert["det_psfflux"] and alert["det_psfflux"][0] is not None:
            flux, err = np.asarray(alert["det_psfflux"], float), np.asarray(alert["det_psffluxerr"], float)
        else:
            m, s = np.asarray(alert["det_magpsf"], float), np.asarray(alert["det_sigmapsf"], float)
            flux = np.where(alert["det_isdiffpos"], 1.0, -1.0) * 10 ** (-0.4 * (m - 31.4))
            err = np.abs(flux) * s / 1.0857
        for band in v2.BANDS:
            keep = (bands == band) & np.isfinite(flux) & np.isfinite(err) & (err > 0)
            if keep.any():
                basic(t[keep], flux[keep], err[keep], fill_value=np.nan, sorted=True, check=False)
                tb = t[keep]
                if len(np.unique(tb)) == len(tb) >= v2.PERIODOGRAM_MIN_POINTS:
                    periodogram(tb, flux[keep], err[keep], fill_value=np.nan, sorted=True, check=False)
        done += 1
    return done


def run(bench) -> None:
    """Rows and targets of issue 18 in the bench report (after ``run_features``, which ingested the ZTF alerts)."""
    import pyarrow as pa

    from skysift.alerts.decode import decode_packets
    from skysift.enrichment.catalogs import load_catalogs
    from skysift.enrichment.core import enrich
    from skysift.enrichment.extinction import healpix_map
    from skysift.features import v2

    report, o = bench.report, bench.o
    t0 = time.perf_counter()
    catalogs = load_catalogs()
    if catalogs is None:
        report.skipped.append("enrichment with the offline cross-match: catalogues not installed (make catalogs)")
    else:
        seconds = time.perf_counter() - t0
        report.add(Row("enrich", "load + index VSX, GCVS, Mangrove (once)", 1, seconds, [seconds], unit="process",
                       note=f"{catalogs.varstars.num_rows:,} variable stars, {catalogs.galaxies.num_rows:,} galaxies"))
    tables = [bench.fink_store.read_table(k) for k in bench.alerts_keys]
    n = sum(t.num_rows for t in tables)
    ebv_map = healpix_map()

    def enrich_batch(table):
        return enrich(table, None, ebv_map, catalogs)

    seconds, lat, enriched = timed(enrich_batch, tables)
    if catalogs is not None:
        xmatch_row = report.add(Row("enrich", "E(B-V) + offline cross-match, no Sherlock", n, seconds, lat))
        galaxies, varstars = _sky(catalogs.galaxies), _sky(catalogs.varstars)
        _per_alert_xmatch(tables[0].slice(0, 1), galaxies, varstars)  # astropy builds its trees once, untimed
        sample = tables[0].slice(0, N_BASELINE_XMATCH)
        seconds, lat, _ = timed(lambda t: _per_alert_xmatch(t, galaxies, varstars), [sample])
        base = report.add(Row("baseline", "per-alert astropy cross-match (same catalogues)", sample.num_rows, seconds, lat))
        xmatch_row.ratios = {"per-alert astropy": xmatch_row.rate / base.rate}
        report.check("enrichment with the offline cross-match >= 20,000 alerts/s per core", xmatch_row.rate, ">=",
                     20_000, "alerts/s")

    rubin_tables = []
    for group in bench.rubin:
        packets = group.packets()
        for start in range(0, len(packets), o.batch):
            rubin_tables.append(decode_packets(packets[start:start + o.batch]).alerts["lsst"])
    rubin_enriched = [enrich_batch(t) for t in rubin_tables]
    for survey, alerts, context in (("ZTF", tables, enriched), ("Rubin", rubin_tables, rubin_enriched)):
        v2.compute_features(alerts[0].slice(0, 10), context[0])  # imports and first-call setup, as a service's start
        seconds, lat, _ = timed(lambda te: v2.compute_features(*te), list(zip(alerts, context)))
        row = report.add(Row("features", f"feature set 2, {survey} (all bands, context)",
                             sum(t.num_rows for t in alerts), seconds, lat))
        sample = pa.concat_tables(alerts)
        sample = sample.slice(0, min(N_BASELINE_FEATURES, sample.num_rows))
        seconds, lat, _ = timed(_per_alert_features, [sample])
        base = report.add(Row("baseline", f"per-alert light-curve features, {survey}", sample.num_rows, seconds, lat))
        row.ratios = {"per-alert": row.rate / base.rate}
        if survey == "ZTF":
            report.check("features v2 >= 10,000 alerts/s per core (ZTF)", row.rate, ">=", 10_000, "alerts/s")
