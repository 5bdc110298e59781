"""Alert filters as data: named presets of column conditions, applied to alerts tables; rejections are counted.

A preset applies to the surveys it names; alerts of other surveys pass untouched (the Fink VRA cuts use ZTF's
``drb`` and Fink's ``cdsxmatch``/``roid``, which a Rubin alert does not carry). A null value fails a condition.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from skysift.errors import InvalidArgument

OPS = {">": pc.greater, ">=": pc.greater_equal, "<": pc.less, "<=": pc.less_equal, "==": pc.equal,
       "!=": pc.not_equal}


@dataclass(frozen=True)
class Filter:
    name: str
    conditions: tuple[tuple[str, str, object], ...]  # (column, operator, value), all must hold
    surveys: tuple[str, ...]

    def apply(self, table: pa.Table, survey: str) -> tuple[pa.Table, int]:
        """(the rows that pass, how many were rejected)."""
        if survey not in self.surveys or table.num_rows == 0:
            return table, 0
        mask = pa.scalar(True)
        for column, op, value in self.conditions:
            mask = pc.and_kleene(mask, OPS[op](table.column(column), pa.scalar(value)))
        kept = table.filter(pc.fill_null(mask, False))
        return kept, table.num_rows - kept.num_rows


PRESETS = {
    # the prototype's Fink VRA selection: faint, likely real, no SIMBAD counterpart, not a known asteroid
    "fink_vra": Filter("fink_vra", (("magpsf", ">", 19.5), ("drb", ">", 0.5), ("cdsxmatch", "==", "Unknown"),
                                    ("roid", "<", 3)), surveys=("ztf",)),
}


def get(name: str | None) -> Filter | None:
    """The preset called ``name`` (None or empty: no filter)."""
    if not name:
        return None
    try:
        return PRESETS[name]
    except KeyError:
        raise InvalidArgument(f"unknown filter {name!r}; presets: {', '.join(sorted(PRESETS))}") from None

