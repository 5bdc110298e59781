import math

import pytest
from matplotlib.collections import PathCollection
from matplotlib.container import ErrorbarContainer

from skysift.alerts.decode import decode_packets
from skysift.app.plots import BAND_COLORS, light_curve, light_curve_figure
from tests.app_support import rubin_packets, ztf_packets


@pytest.fixture(scope="module")
def ztf_rows() -> list[dict]:
    return decode_packets(ztf_packets(40)).alerts["ztf"].to_pylist()


@pytest.fixture(scope="module")
def rubin_row() -> dict:
    rows = decode_packets(rubin_packets(1)).alerts["lsst"].to_pylist()
    return max(rows, key=lambda r: len(r["det_jd"]))


def rich(rows):
    """A real ZTF alert with detections in two bands and upper limits."""
    return next(r for r in rows if len(set(r["det_band"])) == 2 and len(r["ul_jd"]) > 0)


def test_light_curve_keeps_every_point_in_days_from_the_alert(ztf_rows):
    row = rich(ztf_rows)
    curve = light_curve(row)
    assert len(curve.detections) == len(row["det_jd"]) and len(curve.upper_limits) == len(row["ul_jd"])
    assert curve.detections["days"].max() == pytest.approx(0.0)  # the alert is the latest detection
    assert (curve.upper_limits["days"] <= 0).all()
    assert curve.bands == ["g", "r"]


def test_figure_draws_each_band_in_its_colour_with_error_bars(ztf_rows):
    curve = light_curve(rich(ztf_rows))
    ax = light_curve_figure(curve).axes[0]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert sorted(c.get_label() for c in bars) == ["g", "r"]
    colours = {c.get_label(): c.lines[0].get_color() for c in bars}
    assert colours == {"g": BAND_COLORS["g"], "r": BAND_COLORS["r"]}
    assert ax.yaxis_inverted()  # magnitudes: bright at the top


def test_upper_limits_are_open_markers_and_can_be_hidden(ztf_rows):
    curve = light_curve(rich(ztf_rows))
    shown = [c for c in light_curve_figure(curve).axes[0].collections
             if isinstance(c, PathCollection) and "upper limit" in c.get_label()]
    assert sum(len(c.get_offsets()) for c in shown) == curve.upper_limits["limit"].notna().sum()
    assert all(len(c.get_facecolors()) == 0 or c.get_facecolors()[0][3] == 0 for c in shown)  # open
    hidden = [c for c in light_curve_figure(curve, upper_limits=False).axes[0].collections
              if "upper limit" in c.get_label()]
    assert hidden == []


def test_rubin_light_curve_has_its_bands_and_fluxes(rubin_row):
    curve = light_curve(rubin_row)
    assert curve.has_flux
    assert set(curve.bands) <= set("ugrizy") and len(curve.bands) >= 3
    ax = light_curve_figure(curve, flux=True).axes[0]
    assert ax.get_ylabel() == "PSF flux (nJy)" and not ax.yaxis_inverted()
    plotted = sum(len(c[0].get_xdata()) for c in ax.containers)
    assert plotted == curve.detections["flux"].notna().sum() == len(rubin_row["det_jd"])


def test_rubin_magnitudes_follow_the_flux_conversion(rubin_row):
    curve = light_curve(rubin_row)
    d = curve.detections.dropna(subset=["mag", "flux"])
    d = d[d["flux"] > 0]
    assert len(d) > 0
    assert d["mag"].to_numpy() == pytest.approx((-2.5 * d["flux"].map(math.log10) + 31.4).to_numpy(), abs=1e-6)


def test_alert_without_history_plots_without_error():
    row = {"jd": 2460000.5, "det_jd": [], "det_band": [], "det_magpsf": [], "det_sigmapsf": [], "ul_jd": [],
           "ul_band": [], "ul_diffmaglim": []}
    ax = light_curve_figure(light_curve(row)).axes[0]
    assert any("no detection" in t.get_text() for t in ax.texts)



def test_a_single_detection_is_drawn_on_the_30_days_before_it_not_on_years():
    """matplotlib widens a zero-width range to years (a lone Rubin detection of the demo showed 2017-2034)."""
    from skysift.app.plots import MJD_OFFSET

    real = decode_packets(rubin_packets(1)).alerts["lsst"].to_pylist()[0]
    last = real["det_jd"].index(max(real["det_jd"]))  # the alert itself, as if it were the object's first detection
    row = {**real, **{k: [v[last]] for k, v in real.items() if k.startswith("det_")},
           **{k: [] for k in real if k.startswith("ul_")}}
    ax = light_curve_figure(light_curve(row)).axes[0]
    low, high = ax.get_xlim()
    assert 30 <= high - low <= 33 and low < row["det_jd"][0] - MJD_OFFSET < high
