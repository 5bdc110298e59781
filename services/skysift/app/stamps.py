"""Render the science, template and difference stamps (gzipped FITS, as alerts carry them) to PNG bytes.

Rendered once per stamp and cached by the page: ``st.image`` would otherwise re-encode arrays on every rerun.
Scaling is ZScale with an asinh stretch by default (what scanners find most readable); a percentile cut with
a linear, sqrt or log stretch is the alternative for bright or saturated sources.
"""

from __future__ import annotations

import gzip
import io
import warnings

import numpy as np

from skysift.errors import InvalidArgument

STAMPS = ("science", "template", "difference")
STRETCHES = ("asinh", "linear", "sqrt", "log")


def fits_image(data: bytes) -> np.ndarray:
    """The 2-D image of a (possibly gzipped) FITS stamp, as float with NaN for missing pixels."""
    from astropy.io import fits
    from astropy.io.fits.verify import VerifyWarning

    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)  # some ZTF stamps have a non-standard SIMPLE card
        try:
            with fits.open(io.BytesIO(data), memmap=False) as hdul:
                image = next((h.data for h in hdul if h.data is not None and np.ndim(h.data) == 2), None)
        except OSError as exc:
            raise InvalidArgument(f"not a FITS stamp: {exc}") from None
    if image is None:
        raise InvalidArgument("FITS stamp has no 2-D image")
    return np.asarray(image, dtype=np.float64)


def stamp_png(data: bytes, stretch: str = "asinh", zscale: bool = True, size: int = 240) -> bytes:
    """PNG bytes of one stamp, upsampled to about ``size`` pixels (nearest neighbour keeps pixels visible)."""
    import matplotlib.pyplot as plt
    from astropy.visualization import (
        AsinhStretch,
        ImageNormalize,
        LinearStretch,
        LogStretch,
        PercentileInterval,
        SqrtStretch,
        ZScaleInterval,
    )

    if stretch not in STRETCHES:
        raise InvalidArgument(f"unknown stretch {stretch!r}; expected one of {', '.join(STRETCHES)}")
    image = fits_image(data)
    finite = np.isfinite(image)
    if not finite.any():
        raise InvalidArgument("FITS stamp has no finite pixel")
    filled = np.where(finite, image, np.nanmedian(image))
    stretch_obj = {"asinh": AsinhStretch(0.1), "linear": LinearStretch(), "sqrt": SqrtStretch(),
                   "log": LogStretch()}[stretch]
    interval = ZScaleInterval() if zscale else PercentileInterval(99.0)  # 0.5-99.5 percent
    norm = ImageNormalize(filled, interval=interval, stretch=stretch_obj, clip=True)
    scaled = np.ma.filled(norm(filled), 0.0)
    factor = max(1, size // max(scaled.shape))
    scaled = np.kron(scaled, np.ones((factor, factor)))
    buf = io.BytesIO()
    plt.imsave(buf, scaled, cmap="gray", origin="lower", vmin=0.0, vmax=1.0, format="png")
    return buf.getvalue()
