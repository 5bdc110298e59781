"""The default sink: the predictions of a features batch as parquet, beside it under ``predictions/``.

Written before any other sink runs, atomically (the store's contract), so the record of what was scored survives
whatever happens to SkyPortal or Slack. A batch scored again by another model version (the champion moved: the
poll re-scores, :mod:`skysift.backlog`) keeps the earlier versions' rows, the new ones last; a version scoring
again replaces its own rows. Then each version's marker is left for the poll's backlog.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from skysift.backlog import Champion, mark_scored
from skysift.store.base import ObjectStore
from skysift.store.keys import Batch, BatchKey


def write_predictions(store: ObjectStore, features: BatchKey, predictions: pa.Table,
                      champions: Iterable[Champion] = ()) -> Batch:
    """Write ``predictions`` (by ``champions``, the model versions that scored) beside ``features``; the batch
    returned counts the rows of this scoring."""
    key, scored = str(features.sibling("predictions")), predictions.num_rows
    champions = list(champions)
    if champions and store.exists(key):
        earlier = store.read_table(key)
        versions = pa.array([f"{n}\0{v}" for n, v in champions])
        scored_now = pc.is_in(pc.binary_join_element_wise(earlier.column("model_name"), earlier.column("model_version"),
                                                          "\0"), value_set=versions)
        kept = earlier.filter(pc.invert(scored_now))
        if kept.num_rows:
            predictions = pa.concat_tables([kept, predictions], promote_options="default").replace_schema_metadata(
                predictions.schema.metadata)
    store.write_table(key, predictions)
    mark_scored(store, features, champions)
    return Batch(key, features.survey, scored)
