import gzip
import io

import fastavro
import numpy as np
import pytest
from PIL import Image

from skysift.alerts.decode import decode_packets
from skysift.app.stamps import fits_image, stamp_png
from skysift.errors import InvalidArgument
from tests.app_support import ZTF_AVRO, rubin_packets


@pytest.fixture(scope="module")
def ztf_stamps() -> dict[str, bytes]:
    with open(ZTF_AVRO[0], "rb") as fh:
        alert = next(iter(fastavro.reader(fh)))
    return {k: alert[f"cutout{k.title()}"]["stampData"] for k in ("science", "template", "difference")}


def test_ztf_stamp_is_a_gzipped_63_pixel_image(ztf_stamps):
    assert ztf_stamps["science"][:2] == b"\x1f\x8b"
    assert fits_image(ztf_stamps["science"]).shape == (63, 63)


def test_stamp_renders_to_an_upsampled_grey_png(ztf_stamps):
    png = Image.open(io.BytesIO(stamp_png(ztf_stamps["difference"], size=240)))
    assert png.format == "PNG"
    assert png.size == (63 * 3, 63 * 3)  # 240 // 63 = 3 times, nearest neighbour
    pixels = np.asarray(png.convert("L"))
    assert pixels.min() < pixels.max()  # a scaled image, not a flat one


def test_stretches_give_different_images(ztf_stamps):
    assert stamp_png(ztf_stamps["science"], "asinh") != stamp_png(ztf_stamps["science"], "linear")


def test_uncompressed_rubin_stamp_renders():
    result = decode_packets(rubin_packets(1), keep_cutouts=True)
    stamp = result.cutouts["lsst"].column("cutout_difference")[0].as_py()
    assert stamp[:6] == b"SIMPLE"
    assert Image.open(io.BytesIO(stamp_png(stamp))).format == "PNG"


def test_not_fits_is_an_invalid_argument():
    with pytest.raises(InvalidArgument, match="FITS"):
        fits_image(gzip.compress(b"not a fits file at all"))


def test_unknown_stretch_is_refused(ztf_stamps):
    with pytest.raises(InvalidArgument, match="stretch"):
        stamp_png(ztf_stamps["science"], stretch="histeq")
