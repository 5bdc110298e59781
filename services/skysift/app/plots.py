"""Light curves of one alert: detections with error bars per band, upper limits as open markers.

Drawn from the alert row's list columns (see :mod:`skysift.alerts.schema`), time in days relative to the
alert itself (0 = this alert, negative = earlier), magnitudes with bright at the top. Upper limits are
``diffmaglim`` values, never magnitudes, so they get their own open downward markers and can be hidden.
Rubin rows can also be drawn in flux (nJy), where faint and negative detections stay visible.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import pandas as pd

# Filter colours as ZTF and Rubin scanners know them (g green, r red).
BAND_COLORS = {"u": "#7b3294", "g": "#1a9641", "r": "#d7191c", "i": "#e08214", "z": "#636363", "y": "#252525"}
BAND_ORDER = ("u", "g", "r", "i", "z", "y")


@dataclass(frozen=True)
class LightCurve:
    """Detections (days, band, mag, err, flux, flux_err) and upper limits (days, band, limit) of one alert."""

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
        "band": list(row.get("det_band") or [None] * n),
        "mag": _num(row.get("det_magpsf")),
        "err": _num(row.get("det_sigmapsf")) or [math.nan] * n,
        "flux": flux,
        "flux_err": flux_err,
    })
    ul_jd = _num(row.get("ul_jd"))
    upper_limits = pd.DataFrame({
        "days": [jd - ref for jd in ul_jd],
        "band": list(row.get("ul_band") or [None] * len(ul_jd)),
        "limit": _num(row.get("ul_diffmaglim")),
    })
    return LightCurve(ref, detections, upper_limits)


def light_curve_figure(curve: LightCurve, upper_limits: bool = True, flux: bool = False):
    """A matplotlib figure of ``curve``; ``flux`` plots nJy instead of magnitudes (Rubin rows)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.4), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    det = curve.detections
    value, error = ("flux", "flux_err") if flux else ("mag", "err")
    for band in curve.bands:
        color = BAND_COLORS.get(band, "#1f78b4")
        points = det[(det["band"] == band) & det[value].notna()]
        if len(points):
            ax.errorbar(points["days"], points[value], yerr=points[error].fillna(0.0), fmt="o", ms=5, color=color,
                        ecolor=color, elinewidth=1, capsize=2, label=band)
        if upper_limits and not flux:
            limits = curve.upper_limits[(curve.upper_limits["band"] == band) & curve.upper_limits["limit"].notna()]
            if len(limits):
                ax.scatter(limits["days"], limits["limit"], marker="v", s=30, facecolors="none", edgecolors=color,
                           linewidths=1, alpha=0.8, label=f"{band} upper limit")
    this = det[det["days"].abs() < 1e-6]
    if len(this) and this[value].notna().any():
        ax.scatter(this["days"], this[value], s=160, facecolors="none", edgecolors="black", linewidths=1.2,
                   label="this alert")
    ax.set_xlabel("days relative to this alert")
    if flux:
        ax.set_ylabel("PSF flux (nJy)")
        ax.axhline(0.0, color="#999999", lw=0.8)
    else:
        ax.set_ylabel("magnitude (AB)")
        ax.invert_yaxis()
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.text(0.5, 0.5, "no detection to plot", ha="center", va="center", transform=ax.transAxes)
    return fig


def figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
