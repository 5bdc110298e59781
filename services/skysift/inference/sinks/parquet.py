"""The default sink: the predictions of a features batch as parquet, beside it under ``predictions/``.

Written before any other sink runs, atomically (the store's contract), so the record of what was scored survives
whatever happens to SkyPortal or Slack.
"""

from __future__ import annotations

import pyarrow as pa

from skysift.store.base import ObjectStore
from skysift.store.keys import Batch, BatchKey


def write_predictions(store: ObjectStore, features: BatchKey, predictions: pa.Table) -> Batch:
    key = str(features.sibling("predictions"))
    store.write_table(key, predictions)
    return Batch(key, features.survey, predictions.num_rows)
