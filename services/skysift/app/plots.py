"""Light curves of one alert: detections with error bars per band, upper limits as open markers.

Drawn from the alert row's list columns (see :mod:`skysift.alerts.schema`) against MJD, with calendar dates
on the top axis and a line at this alert (``days`` relative to it is kept for the code), magnitudes with
bright at the top. Upper limits are
``diffmaglim`` values, never magnitudes, so they get their own open downward markers and can be hidden.
Rubin rows can also be drawn in flux (nJy), where faint and negative detections stay visible.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import pandas as pd

from skysift.alerts.schema import HISTORY_DAYS

MJD_OFFSET = 2400000.5  # JD of MJD 0

# Filter colours as ZTF and Rubin scanners know them (g green, r red).
BAND_COLORS = {"u": "#7b3294", "g": "#1a9641", "r": "#d7191c", "i": "#e08214", "z": "#636363", "y": "#252525"}
BAND_ORDER = ("u", "g", "r", "i", "z", "y")


@dataclass(frozen=True)
class LightCurve:
    """Detections (days, mjd, band, mag, err, flux, flux_err) and upper limits (days, mjd, band, limit) of one
    alert; ``days`` are relative to the alert."""

    ref_jd: float
    detections: pd.DataFrame
    upper_limits: pd.DataFrame

    @property
    def bands(self) -> list[str]:
        present = set(self.detections["band"]) | set(self.upper_limits["band"])
        return [b for b in BAND_ORDER if b in present] + sorted(present - set(BAND_ORDER))

    @property
    def has_flux(self) -> bool:
        return bool(self.detections["flux"].notna().any())


def _num(values) -> list[float]:
    return [math.nan if v is None else float(v) for v in (values or [])]


def light_curve(row: dict) -> LightCurve:
    """The light curve of an alert row; empty lists give empty frames, never an error."""
    ref = float(row["jd"]) if row.get("jd") is not None else math.nan
    det_jd = _num(row.get("det_jd"))
    n = len(det_jd)
    flux = _num(row.get("det_psfflux")) or [math.nan] * n
    flux_err = _num(row.get("det_psffluxerr")) or [math.nan] * n
    detections = pd.DataFrame({
        "days": [jd - ref for jd in det_jd],
        "mjd": [jd - MJD_OFFSET for jd in det_jd],
        "band": list(row.get("det_band") or [None] * n),
        "mag": _num(row.get("det_magpsf")),
        "err": _num(row.get("det_sigmapsf")) or [math.nan] * n,
        "flux": flux,
        "flux_err": flux_err,
    })
    ul_jd = _num(row.get("ul_jd"))
    upper_limits = pd.DataFrame({
        "days": [jd - ref for jd in ul_jd],
        "mjd": [jd - MJD_OFFSET for jd in ul_jd],
        "band": list(row.get("ul_band") or [None] * len(ul_jd)),
        "limit": _num(row.get("ul_diffmaglim")),
    })
    return LightCurve(ref, detections, upper_limits)


def light_curve_figure(curve: LightCurve, upper_limits: bool = True, flux: bool = False):
    """A matplotlib figure of ``curve``; ``flux`` plots nJy instead of magnitudes (Rubin rows)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 3.0), dpi=150, layout="constrained")
    ax = fig.add_subplot()
    det = curve.detections
    value, error = ("flux", "flux_err") if flux else ("mag", "err")
    for band in curve.bands:
        color = BAND_COLORS.get(band, "#1f78b4")
        points = det[(det["band"] == band) & det[value].notna()]
        if len(points):
            ax.errorbar(points["mjd"], points[value], yerr=points[error].fillna(0.0), fmt="o", ms=4, color=color,
                        ecolor=color, elinewidth=1, capsize=2, label=band)
        if upper_limits and not flux:
            limits = curve.upper_limits[(curve.upper_limits["band"] == band) & curve.upper_limits["limit"].notna()]
            if len(limits):
                ax.scatter(limits["mjd"], limits["limit"], marker="v", s=22, facecolors="none", edgecolors=color,
                           linewidths=1, alpha=0.8, label=f"{band} upper limit")
    this = det[det["days"].abs() < 1e-6]
    if len(this) and this[value].notna().any():
        ax.scatter(this["mjd"], this[value], s=120, facecolors="none", edgecolors="black", linewidths=1.2,
                   label="this alert")
    if math.isfinite(curve.ref_jd):
        ax.axvline(curve.ref_jd - MJD_OFFSET, color="black", lw=0.8, ls=":", zorder=0)
    _at_least_the_window(ax, curve, upper_limits and not flux)
    ax.set_xlabel("MJD")
    ax.xaxis.get_major_formatter().set_useOffset(False)
    top = ax.secondary_xaxis("top", functions=(lambda m: m, lambda m: m))
    top.xaxis.set_major_formatter(_date_formatter())
    top.tick_params(labelsize=7)
    ax.tick_params(labelsize=8)
    if flux:
        ax.set_ylabel("PSF flux (nJy)")
        ax.axhline(0.0, color="#999999", lw=0.8)
    else:
        ax.set_ylabel("magnitude (AB)")
        ax.invert_yaxis()
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best", framealpha=0.7)
    else:
        ax.text(0.5, 0.5, "no detection to plot", ha="center", va="center", transform=ax.transAxes)
    return fig


def _at_least_the_window(ax, curve: LightCurve, with_limits: bool) -> None:
    """Show at least the 30 days before the latest point: with one detection matplotlib widens a zero-width range to
    years (a single Rubin detection was drawn on an axis from 2017 to 2034)."""
    mjds = [curve.detections["mjd"]] + ([curve.upper_limits["mjd"]] if with_limits else [])
    points = [float(m) for series in mjds for m in series.dropna()]
    if math.isfinite(curve.ref_jd):
        points.append(curve.ref_jd - MJD_OFFSET)
    if points and max(points) - min(points) < HISTORY_DAYS:
        ax.set_xlim(max(points) - HISTORY_DAYS - 1, max(points) + 1)


def _date_formatter():
    """Calendar dates (UTC) for an MJD axis."""
    from datetime import UTC, datetime, timedelta

    from matplotlib.ticker import FuncFormatter

    epoch = datetime(1858, 11, 17, tzinfo=UTC)  # MJD 0
    return FuncFormatter(lambda mjd, _: (epoch + timedelta(days=mjd)).strftime("%Y-%m-%d")
                         if math.isfinite(mjd) and -1e5 < mjd < 1e5 else "")


def figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
