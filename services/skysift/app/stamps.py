"""Render the science, template and difference stamps (gzipped FITS, as alerts carry them) to PNG bytes.

Rendered once per stamp and cached by the page: ``st.image`` would otherwise re-encode arrays on every rerun.
Scaling is ZScale with a linear stretch by default: side by side on real ZTF difference stamps, linear
ZScale showed the transient as a white point on a mid-grey background, where asinh on ZScale washed the
background out to near white (SkyPortal's default). A percentile cut and asinh, sqrt or log stretches are
the alternatives for bright or saturated sources.

Each stamp carries what a scanner needs to read it: a crosshair (with a gap, so it hides nothing) at the
alert's position, North and East arrows and a scale bar. They come from the stamp's WCS when it has one
(Rubin's do); ZTF's stamps carry no WCS, so their nominal orientation (North up, East left) and pixel scale
are drawn and said to be nominal.
"""

from __future__ import annotations

import gzip
import io
import math
import warnings
from dataclasses import dataclass

import numpy as np

from skysift.errors import InvalidArgument

STAMPS = ("science", "template", "difference")
STRETCHES = ("linear", "asinh", "sqrt", "log")
# Survey pixel scales (arcsec per pixel) for stamps without a WCS.
NOMINAL_SCALE = {"ztf": 1.012, "lsst": 0.2}
SCALE_BAR_ARCSEC = {"ztf": 10.0, "lsst": 2.0}  # about a sixth of each survey's stamp


@dataclass(frozen=True)
class Stamp:
    """A stamp's pixels and where the sky is on them."""

    image: np.ndarray
    center: tuple[float, float]  # (x, y) of the alert, 0-based pixels, y up
    north: tuple[float, float]  # unit vectors on the pixel grid, y up
    east: tuple[float, float]
    arcsec_per_pixel: float | None
    from_wcs: bool


def fits_hdu(data: bytes):
    """The first 2-D image HDU of a (possibly gzipped) FITS stamp."""
    from astropy.io import fits
    from astropy.io.fits.verify import VerifyWarning

    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)  # some ZTF stamps have a non-standard SIMPLE card
        try:
            with fits.open(io.BytesIO(data), memmap=False) as hdul:
                hdu = next((h for h in hdul if h.data is not None and np.ndim(h.data) == 2), None)
                if hdu is not None:
                    return np.asarray(hdu.data, dtype=np.float64), hdu.header.copy()
        except OSError as exc:
            raise InvalidArgument(f"not a FITS stamp: {exc}") from None
    raise InvalidArgument("FITS stamp has no 2-D image")


def fits_image(data: bytes) -> np.ndarray:
    """The 2-D image of a (possibly gzipped) FITS stamp, as float with NaN for missing pixels."""
    return fits_hdu(data)[0]


def read_stamp(data: bytes, survey: str = "ztf", ra: float | None = None, dec: float | None = None) -> Stamp:
    """The stamp and its orientation: from its celestial WCS if it has one, else the survey's nominal one."""
    from astropy.wcs import WCS, FITSFixedWarning

    image, header = fits_hdu(data)
    ny, nx = image.shape
    center = ((nx - 1) / 2, (ny - 1) / 2)
    wcs = None
    if "CRVAL1" in header and ("PC1_1" in header or "CD1_1" in header):
        if not header.get("CTYPE1"):  # Rubin's stamps keep CRVAL and the PC matrix but drop CTYPE: TAN, in degrees
            header.update({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CUNIT1": "deg", "CUNIT2": "deg"})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header).celestial
    if wcs is not None and wcs.has_celestial and ra is not None and dec is not None:
        try:
            return _wcs_stamp(image, wcs, ra, dec)
        except (ValueError, ArithmeticError):  # a degenerate WCS: fall back to the nominal orientation
            pass
    return Stamp(image, center, (0.0, 1.0), (-1.0, 0.0), NOMINAL_SCALE.get(survey), False)


def _wcs_stamp(image: np.ndarray, wcs, ra: float, dec: float) -> Stamp:
    step = 1.0 / 3600  # one arcsec, in degrees
    x0, y0 = (float(v) for v in wcs.all_world2pix([[ra, dec]], 0)[0])
    xn, yn = (float(v) for v in wcs.all_world2pix([[ra, dec + step]], 0)[0])
    xe, ye = (float(v) for v in wcs.all_world2pix([[ra + step / math.cos(math.radians(dec)), dec]], 0)[0])
    north, east = (xn - x0, yn - y0), (xe - x0, ye - y0)
    scale = 1.0 / math.hypot(*north)
    if not all(math.isfinite(v) for v in (x0, y0, scale)):
        raise ValueError("WCS gives no finite position")
    return Stamp(image, (x0, y0), _unit(north), _unit(east), scale, True)


def _unit(v: tuple[float, float]) -> tuple[float, float]:
    n = math.hypot(*v)
    return (v[0] / n, v[1] / n)


def stamp_png(data: bytes, stretch: str = "linear", zscale: bool = True, size: int = 400, survey: str = "ztf",
              ra: float | None = None, dec: float | None = None, marks: bool = True) -> bytes:
    """PNG bytes of one stamp, upsampled to about ``size`` pixels (nearest neighbour keeps pixels visible), with
    a crosshair at the alert, N/E arrows and a scale bar unless ``marks`` is off."""
    from astropy.visualization import (
        AsinhStretch,
        ImageNormalize,
        LinearStretch,
        LogStretch,
        PercentileInterval,
        SqrtStretch,
        ZScaleInterval,
    )
    from PIL import Image

    if stretch not in STRETCHES:
        raise InvalidArgument(f"unknown stretch {stretch!r}; expected one of {', '.join(STRETCHES)}")
    stamp = read_stamp(data, survey, ra, dec)
    image = stamp.image
    finite = np.isfinite(image)
    if not finite.any():
        raise InvalidArgument("FITS stamp has no finite pixel")
    filled = np.where(finite, image, np.nanmedian(image))
    stretch_obj = {"asinh": AsinhStretch(0.1), "linear": LinearStretch(), "sqrt": SqrtStretch(),
                   "log": LogStretch()}[stretch]
    interval = ZScaleInterval() if zscale else PercentileInterval(99.0)  # 0.5-99.5 percent
    norm = ImageNormalize(filled, interval=interval, stretch=stretch_obj, clip=True)
    grey = (np.ma.filled(norm(filled), 0.0) * 255).astype(np.uint8)
    factor = max(1, size // max(grey.shape))
    picture = Image.fromarray(np.flipud(grey), mode="L").convert("RGB")  # FITS rows go up, PNG rows down
    picture = picture.resize((grey.shape[1] * factor, grey.shape[0] * factor), Image.Resampling.NEAREST)
    if marks:
        _draw_marks(picture, stamp, factor, survey)
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return buf.getvalue()


def _draw_marks(picture, stamp: Stamp, factor: int, survey: str) -> None:
    from PIL import ImageDraw, ImageFont

    draw = ImageDraw.Draw(picture)
    width, height = picture.size
    mark = (64, 224, 255)  # cyan: readable on black and white pixels alike

    def to_png(x: float, y: float) -> tuple[float, float]:
        return ((x + 0.5) * factor, height - (y + 0.5) * factor)

    cx, cy = to_png(*stamp.center)
    gap, arm = width * 0.045, width * 0.11
    for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        draw.line([(cx + dx * gap, cy + dy * gap), (cx + dx * (gap + arm), cy + dy * (gap + arm))], fill=mark, width=2)

    font = ImageFont.load_default(size=max(10, width // 18))
    length = width * 0.11
    ox, oy = width - length * 1.55, height - length * 1.55  # a compass in the lower right, room for any rotation
    for (vx, vy), letter in ((stamp.north, "N"), (stamp.east, "E")):
        tip = (ox + vx * length, oy - vy * length)
        draw.line([(ox, oy), tip], fill=mark, width=2)
        draw.text((ox + vx * length * 1.35, oy - vy * length * 1.35), letter, fill=mark, font=font, anchor="mm")

    if stamp.arcsec_per_pixel:
        arcsec = SCALE_BAR_ARCSEC.get(survey, 5.0)
        bar = arcsec / stamp.arcsec_per_pixel * factor
        x0, y0 = width * 0.05, height - width * 0.05
        draw.line([(x0, y0), (x0 + bar, y0)], fill=mark, width=3)
        draw.text((x0, y0 - width * 0.015), f'{arcsec:g}"', fill=mark, font=font, anchor="ls")


def orientation_note(data: bytes, survey: str, ra: float | None = None, dec: float | None = None) -> str:
    """One line on how to read the stamp's marks: WCS or nominal orientation, and the pixel scale."""
    stamp = read_stamp(data, survey, ra, dec)
    source = "from the stamp's WCS" if stamp.from_wcs else f"nominal for {survey.upper()} (its stamps carry no WCS)"
    scale = f'{stamp.arcsec_per_pixel:.3g}"/px' if stamp.arcsec_per_pixel else "pixel scale unknown"
    return f"{stamp.image.shape[1]}×{stamp.image.shape[0]} px at {scale}; N/E {source}; crosshair at the alert"
