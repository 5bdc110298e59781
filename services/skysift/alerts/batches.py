"""Reading stored alerts batches: a stage's columns, checked to be an alerts table; and the objectIds of candids
from the alerts batch beside a later stage's batch (features and predictions do not carry them)."""

from __future__ import annotations

import io
import logging

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from skysift.errors import InvalidArgument, NotFound
from skysift.store.base import ObjectStore, parquet_errors
from skysift.store.keys import BatchKey

log = logging.getLogger(__name__)


def read_alerts(store: ObjectStore, key: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> pa.Table:
    """The ``required`` and present ``optional`` columns of the alerts batch at ``key``; InvalidArgument when it
    lacks a required one (a key of another table, say), FailedPrecondition when it is not parquet."""
    data = io.BytesIO(store.get_bytes(key))
    with parquet_errors(key, store.url):
        names = pq.read_schema(data).names
        missing = [c for c in required if c not in names]
        if missing:
            raise InvalidArgument(f"{key} is not an alerts table: it lacks {', '.join(missing)}")
        return pq.read_table(data, columns=[*required, *(c for c in optional if c in names)])


def object_ids(store: ObjectStore, batch: BatchKey, candids: pa.Array) -> pa.Array:
    """objectIds of ``candids`` (null where unknown) from the alerts sibling of ``batch``; all null, with a
    warning, when that alerts batch is gone."""
    key = str(batch.sibling("alerts"))
    try:
        ids = store.read_table(key, columns=["candid", "objectId"])
    except NotFound:
        log.warning("no alerts batch beside %s: objectId left null", batch.stage, extra={"alerts_key": key})
        return pa.nulls(len(candids), pa.string())
    where = pc.index_in(candids, value_set=ids.column("candid").combine_chunks())
    return ids.column("objectId").combine_chunks().take(where)
