"""Column helpers shared by the ZTF and Rubin cleaners: tolerant field access and light-curve list columns.

Cleaning runs on Arrow/Polars columns, never per alert, so that it keeps pace with the batch decoder.
Schemas differ between versions (``drb`` appears in ZTF 3.3, ``fp_hists`` in 4.x, ...): a missing field is a
null column, never an error.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from skysift.alerts.schema import HISTORY_DAYS

ROW = "_row"  # position of the alert in the decoded frame: the key that joins history back to its alert

DET_COLUMNS = ["jd", "band", "magpsf", "sigmapsf", "isdiffpos", "candid"]
UL_COLUMNS = ["jd", "band", "diffmaglim"]


def col(df: pl.DataFrame, name: str, dtype: pl.DataType) -> pl.Expr:
    """A top-level column cast to ``dtype``, or nulls when this schema lacks it."""
    if name in df.columns:
        return pl.col(name).cast(dtype, strict=False)
    return pl.lit(None, dtype)


def field(schema: pl.Schema | dict, struct: str, name: str, dtype: pl.DataType) -> pl.Expr:
    """``struct.name`` cast to ``dtype``, or nulls when the struct (or this schema version) lacks it."""
    struct_type = schema.get(struct)
    if isinstance(struct_type, pl.List):
        struct_type = struct_type.inner
    if isinstance(struct_type, pl.Struct) and name in {f.name for f in struct_type.fields}:
        return pl.col(struct).struct.field(name).cast(dtype, strict=False)
    return pl.lit(None, dtype)


def isdiffpos(expr: pl.Expr) -> pl.Expr:
    """ZTF's 't'/'f' (or '1'/'0') as a boolean; anything else is null."""
    return expr.str.to_lowercase().replace_strict({"t": True, "1": True, "f": False, "0": False}, default=None,
                                                  return_dtype=pl.Boolean)


def explode_history(df: pl.DataFrame, column: str, current_jd: pl.Expr, fields: Iterable[str]) -> pl.DataFrame:
    """One row per non-null history entry of ``column`` (a list of structs): ``_row``, the alert's ``_cur_jd``
    and those of ``fields`` the entries have (absent ones are left to :func:`col`, which reads them as nulls).

    Why through Arrow: the entries are the list's child array as decoded; taking the few fields used from it,
    with each entry's row, copies those fields only, where exploding the list copied every field of every
    entry (a Rubin history has ~100 fields and hundreds of entries an alert: 5x the time).
    """
    keys = df.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias(ROW), current_jd.alias("_cur_jd"))
    dtype = df.schema.get(column)
    if not isinstance(dtype, pl.List) or not isinstance(dtype.inner, pl.Struct):
        return keys.clear()  # no history in this schema: read through col(), every field is null
    wanted = set(fields)
    history = df.get_column(column).to_arrow()
    if isinstance(history, pa.ChunkedArray):
        history = history.combine_chunks()
    entries = pc.list_flatten(history)  # the entries of non-null lists, in row order
    lengths = pc.list_value_length(history).fill_null(0).to_numpy()  # a null list may still span offsets: 0
    table = pa.table({ROW: pa.array(np.repeat(np.arange(len(history), dtype=np.uint32), lengths)),
                      **{f.name: entries.field(f.name) for f in entries.type if f.name in wanted}})
    if entries.null_count:
        table = table.filter(entries.is_valid())
    long = pl.from_arrow(table)
    return long.with_columns(keys.get_column("_cur_jd").gather(long.get_column(ROW)))


def in_window(jd: pl.Expr, current_jd: pl.Expr = pl.col("_cur_jd")) -> pl.Expr:
    """Strictly before the alert and no older than HISTORY_DAYS (the alert itself is added separately)."""
    return (jd < current_jd) & (jd >= current_jd - HISTORY_DAYS)


def assemble(base: pl.DataFrame, detections: pl.DataFrame, upper_limits: pl.DataFrame,
             det_columns: list[str] = DET_COLUMNS, ul_columns: list[str] = UL_COLUMNS) -> pl.DataFrame:
    """Attach ``det_*`` and ``ul_*`` list columns (sorted by jd, empty lists when none) to ``base``.

    ``detections`` must include the alert itself; a detection repeated in the history (same candid) is kept once.
    """
    detections = detections.unique([ROW, "candid"], keep="first", maintain_order=True)
    # stable sorts: points sharing a jd keep the packet's order, so a row never depends on the batch it came in
    det = (detections.sort([ROW, "jd"], maintain_order=True).group_by(ROW, maintain_order=True)
           .agg([pl.col(c).alias(f"det_{c}") for c in det_columns]))
    ul = (upper_limits.sort([ROW, "jd"], maintain_order=True).group_by(ROW, maintain_order=True)
          .agg([pl.col(c).alias(f"ul_{c}") for c in ul_columns]))
    out = base.join(det, on=ROW, how="left", maintain_order="left").join(ul, on=ROW, how="left",
                                                                         maintain_order="left")
    empty = [pl.col(f"ul_{c}").fill_null(pl.lit([], dtype=out.schema[f"ul_{c}"])) for c in ul_columns]
    return out.with_columns(empty)
