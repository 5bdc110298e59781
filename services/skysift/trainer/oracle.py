"""Oracle labels for experiments: Fink's SIMBAD cross-match (and TNS) types mapped to galactic / extragalactic.

The raw ``cdsxmatch`` values mix SIMBAD's old and new type names (``EB*`` and ``EclBin``, ``RRLyr`` and
``RRLyrae``), candidate forms (``X_Candidate``, ``Candidate_X``, ``X?``), source prefixes (``(SIMBAD) ``,
``(TNS) ``) and failures (``Fail 500``). :func:`clean_type` reduces a value to one canonical name;
:func:`classify` maps canonical names to ``galactic``/``extragalactic`` and leaves out what says nothing about
the host: no match (``Unknown``, ``Fail``), wavelength-only types (``Radio``, ``UV``, ``blue``), Fink's own
model guesses (``SN candidate``) and names that are both (TNS ``Nova``: many are in M31). When the SIMBAD
type says nothing, the TNS classification (``tns`` column) is used.
The sample was chosen across classes: its balance is not the stream's.
"""

from __future__ import annotations

import math
import re
from collections import Counter

import pandas as pd

# old SIMBAD names (and spelling variants) -> the current name
RENAMES = {
    "EB*": "EclBin", "RRLyr": "RRLyrae", "CV*": "CataclyV*", "LPV*": "LongPeriodV*", "LP*": "LongPeriodV*",
    "SN": "Supernova", "SN*": "Supernova", "Seyfert_1": "Seyfert1", "Seyfert_2": "Seyfert2", "deltaCep": "Cepheid",
    "pulsV*SX": "SXPheV*", "BYDra": "BYDraV*", "TTau*": "TTauri*", "WR*": "WolfRayet*", "WD*": "WhiteDwarf",
    "OH/IR": "OH/IR*", "low-mass*": "Low-Mass*", "HB*": "HorBranch*", "C*": "CarbonStar", "PM*": "HighPM*",
    "Hsd": "HotSubdwarf", "NS": "NeutronStar", "Erupt*RCrB": "RCrBV*", "V*": "Variable*", "XB": "XrayBin",
    "HMXB": "HighMassXBin", "Blue": "blue", "Nova": "Nova", "QSO_CandidateSeyfert": "Seyfert",
    "PulsV*WVir": "Type2Cep", "PulsV*delSct": "delSctV*", "Em*": "EmLineStar", "EmG": "EmissionG",
}
GALACTIC = {
    "CataclyV*", "YSO", "LongPeriodV*", "AGB*", "Symbiotic*", "RRLyrae", "RSCVnV*", "EclBin", "Mira", "delSctV*",
    "PlanetaryNeb", "Ae*", "OrionV*", "OH/IR*", "bCepV*", "YellowSG", "HorBranch*", "WhiteDwarf", "RedSG",
    "HighMassXBin", "Type2Cep", "Cepheid", "BlueSG", "XrayBin", "PulsV*", "Star", "Variable*", "NeutronStar",
    "BYDraV*", "S*", "IrregularV*", "CarbonStar", "post-AGB*", "TTauri*", "SB*", "Low-Mass*", "Cluster*",
    "HotSubdwarf", "gammaDorV*", "WolfRayet*", "Be*", "Eruptive*", "RCrBV*", "Planet", "HighPM*", "RGB*", "Pec*",
    "brownD*", "denseCore", "**", "SXPheV*", "EllipVar", "LowMassXBin", "Nova", "EmLineStar",
}
EXTRAGALACTIC = {
    "Galaxy", "QSO", "AGN", "Seyfert", "Seyfert1", "Seyfert2", "LINER", "BLLac", "Blazar", "Supernova", "TDE",
    "Kilonova", "GinPair", "HII_G", "LensedImage", "ULX", "FRB", "Afterglow", "ILRT", "LRN", "LBV", "Impostor-SN",
    "EmissionG",
}
# names that do not tell galactic from extragalactic
UNINFORMATIVE = {
    "Unknown", "Fail", "blue", "Radio", "Radio(cm)", "UV", "NearIR", "MIR", "Transient", "Inexistent",
    "multiple_object", "EmObj", "Light-Echo", "Other", "SN candidate", "Early SN Ia candidate", "Kilonova candidate",
}
TNS_AMBIGUOUS = {"Nova"}  # TNS novae are often extragalactic (M31), SIMBAD's are Galactic


def clean_type(raw) -> tuple[str, str]:
    """(source, canonical name) of one raw type value; source is ``simbad`` or ``tns``."""
    text = "" if raw is None or (isinstance(raw, float) and math.isnan(raw)) else str(raw).strip()
    source = "simbad"
    if m := re.match(r"^\((SIMBAD|TNS)\)\s*", text):
        source = m.group(1).lower()
        text = text[m.end():]
    if text.startswith("Fail"):
        return source, "Fail"
    if re.match(r"^(SN|SLSN)([ -]|$)", text) and text not in ("SN candidate",):
        return source, "Supernova"  # TNS subtypes: SN Ia, SN II-pec, SLSN-I, ...
    for pattern in (r"^Candidate_(.+)$", r"^(.+)_Candidate$", r"^(.+)\?$"):
        if m := re.match(pattern, text):
            text = m.group(1)
    return source, RENAMES.get(text, text)


def classify(raw) -> str | None:
    """``galactic``, ``extragalactic`` or None (uninformative or unmapped)."""
    source, name = clean_type(raw)
    if source == "tns" and name in TNS_AMBIGUOUS:
        return None
    if name in GALACTIC:
        return "galactic"
    if name in EXTRAGALACTIC:
        return "extragalactic"
    return None


def oracle_labels(table: pd.DataFrame) -> pd.DataFrame:
    """candid, objectId, label (galactic/extragalactic), the raw type used and its cleaned name.

    ``table`` has ``candid``, ``objectId``, ``cdsxmatch`` and optionally ``tns``; rows with no usable type are
    dropped. Duplicated candids keep their first row.
    """
    rows = []
    for r in table.drop_duplicates("candid").itertuples(index=False):
        raw = r.cdsxmatch
        label = classify(raw)
        if label is None and "tns" in table.columns:
            raw, label = r.tns, classify(r.tns if str(r.tns).startswith("(TNS)") else f"(TNS) {r.tns}")
        if label is not None:
            rows.append({"candid": int(r.candid), "objectId": r.objectId, "label": label, "raw_type": raw,
                         "clean_type": clean_type(raw)[1]})
    return pd.DataFrame(rows, columns=["candid", "objectId", "label", "raw_type", "clean_type"])


def unmapped(values) -> list[str]:
    """Cleaned names that are neither mapped nor known to be uninformative (to keep the tables complete)."""
    out = set()
    for raw in values:
        source, name = clean_type(raw)
        if name not in GALACTIC | EXTRAGALACTIC | UNINFORMATIVE and not (source == "tns" and name in TNS_AMBIGUOUS):
            out.add(name)
    return sorted(out)


def left_out(table: pd.DataFrame) -> tuple[Counter, Counter]:
    """The rows of ``table`` (candid, cdsxmatch[, tns]) that :func:`oracle_labels` leaves out, counted per
    cleaned type name: (types known to say nothing of the class, types not mapped at all). The second is what
    a mapping could add (e.g. EmG, PulsV*WVir); both are printed by experiments rather than silently dropped."""
    kept = set(oracle_labels(table)["candid"])
    left = table.drop_duplicates("candid")
    left = left[~left["candid"].isin(kept)]
    uninformative, not_mapped = Counter(), Counter()
    for raw in left["cdsxmatch"]:
        name = clean_type(raw)[1]
        (not_mapped if unmapped([raw]) else uninformative)[name] += 1
    return uninformative, not_mapped
