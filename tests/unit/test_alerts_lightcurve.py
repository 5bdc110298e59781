"""The light-curve history as one row per entry (``explode_history``), on list columns as Arrow may hold them."""

from __future__ import annotations

import polars as pl

from skysift.alerts.lightcurve import explode_history


def test_a_null_history_that_still_spans_entries_gives_no_rows_and_the_others_keep_their_alert():
    """A null list may keep the offsets of the entries it had (a list masked by a condition, as polars' when/then
    makes it): its entries are not the alert's. Taking each entry's alert from the list's parent indices gave more
    rows than entries (an Arrow error); null entries inside a list are dropped too."""
    df = pl.DataFrame({"jd": [10.0, 20.0, 30.0],
                       "hist": [[{"jd": 1.0, "mag": 18.0}, {"jd": 2.0, "mag": 18.5}], [{"jd": 3.0, "mag": 19.0}],
                                [{"jd": 4.0, "mag": 17.0}, None]]})
    masked = df.with_columns(pl.when(pl.col("jd") != 10.0).then(pl.col("hist")).alias("hist"))
    long = explode_history(masked, "hist", pl.col("jd"), ["jd", "mag"])
    assert long.select("_row", "jd", "mag", "_cur_jd").rows() == [(1, 3.0, 19.0, 20.0), (2, 4.0, 17.0, 30.0)]
    whole = explode_history(df, "hist", pl.col("jd"), ["mag"])  # only the fields asked for
    assert whole.columns == ["_row", "mag", "_cur_jd"] and whole.get_column("_row").to_list() == [0, 0, 1, 2]
