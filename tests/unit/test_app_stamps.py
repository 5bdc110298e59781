import gzip
import io

import fastavro
import numpy as np
import pytest
from PIL import Image

from skysift.alerts.decode import decode_packets
from skysift.app.stamps import fits_image, orientation_note, read_stamp, stamp_png
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


def test_ztf_stamp_has_no_wcs_so_its_orientation_and_scale_are_nominal(ztf_stamps):
    stamp = read_stamp(ztf_stamps["science"], "ztf", 10.0, 20.0)
    assert not stamp.from_wcs and stamp.arcsec_per_pixel == pytest.approx(1.012)
    assert stamp.center == (31.0, 31.0) and stamp.north == (0.0, 1.0) and stamp.east == (-1.0, 0.0)
    assert "nominal for ZTF" in orientation_note(ztf_stamps["science"], "ztf")


def test_rubin_stamp_orientation_comes_from_its_wcs():
    result = decode_packets(rubin_packets(1), keep_cutouts=True)
    alert = result.alerts["lsst"].slice(0, 1).to_pylist()[0]
    stamp = read_stamp(result.cutouts["lsst"].column("cutout_science")[0].as_py(), "lsst", alert["ra"], alert["dec"])
    assert stamp.from_wcs and stamp.arcsec_per_pixel == pytest.approx(0.2, rel=0.02)
    # the focal plane is rotated (ROTPA ~45 deg): North is not up; East is a quarter turn from North with the
    # sky's handedness (as North up, East left: a cross product of +1)
    assert abs(stamp.north[0]) > 0.5
    assert stamp.north[0] * stamp.east[1] - stamp.north[1] * stamp.east[0] == pytest.approx(1.0, abs=0.05)
    assert all(abs(c - 15) < 2 for c in stamp.center)  # the alert is at the centre of its stamp


def test_marks_are_drawn_over_the_stamp_and_can_be_left_out(ztf_stamps):
    marked = np.asarray(Image.open(io.BytesIO(stamp_png(ztf_stamps["difference"]))).convert("RGB")).astype(int)
    plain = np.asarray(Image.open(io.BytesIO(stamp_png(ztf_stamps["difference"], marks=False))).convert("RGB"))
    cyan = (marked[..., 2] - marked[..., 0] > 100)
    assert cyan.any() and not (plain[..., 2].astype(int) - plain[..., 0] > 100).any()  # the stamp itself is grey
    middle = marked.shape[0] // 2
    assert cyan[middle, : middle].any() and not cyan[middle - 2: middle + 3, middle - 2: middle + 3].any()  # a gap


def test_linear_zscale_is_the_default_stretch(ztf_stamps):
    assert stamp_png(ztf_stamps["difference"]) == stamp_png(ztf_stamps["difference"], "linear", zscale=True)
