"""Filter presets on alerts tables: conditions as data, rejections counted, scoped to their survey."""

from __future__ import annotations

import pyarrow as pa

from skysift.alerts import filters
from skysift.alerts.schema import conform
from skysift.alerts.surveys import alerts_schema


def table(**columns) -> pa.Table:
    n = len(next(iter(columns.values())))
    base = {"candid": list(range(n)), "objectId": ["o"] * n, "survey": ["ztf"] * n}
    return conform(pa.table({**base, **columns}), alerts_schema())


def test_fink_vra_keeps_only_alerts_passing_every_cut_and_counts_the_rest():
    t = table(magpsf=[20.0, 19.0, 20.0, 20.0, 20.0, 20.0], drb=[0.9, 0.9, 0.3, 0.9, 0.9, None],
              cdsxmatch=["Unknown", "Unknown", "Unknown", "RRLyr", "Unknown", "Unknown"], roid=[0, 0, 0, 0, 3, 0])
    kept, rejected = filters.get("fink_vra").apply(t, "ztf")
    assert kept.column("candid").to_pylist() == [0] and rejected == 5  # a null drb fails its cut


def test_a_preset_leaves_other_surveys_alone():
    t = table(magpsf=[15.0])
    kept, rejected = filters.get("fink_vra").apply(t, "lsst")
    assert kept.num_rows == 1 and rejected == 0


def test_no_filter_name_means_no_filter():
    assert filters.get(None) is None and filters.get("") is None
