"""Conversions between core values and their protobuf messages that every servicer and client shares."""

from __future__ import annotations

from skysift.store.keys import Batch
from skysift.v1 import common_pb2


def batch_ref(batch: Batch) -> common_pb2.BatchRef:
    return common_pb2.BatchRef(key=batch.key, survey=batch.survey, rows=batch.rows)


def batch_from_ref(ref: common_pb2.BatchRef) -> Batch:
    return Batch(ref.key, ref.survey, ref.rows)
