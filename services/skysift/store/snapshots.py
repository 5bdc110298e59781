"""Derived snapshots in the store (label events compacted): written under a prefix with
their time in the key, so the newest sorts last; only the newest few are kept. They never replace what they are
derived from, so writing one is best effort."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

import pyarrow as pa

from skysift.errors import SkysiftError

log = logging.getLogger(__name__)
KEEP = 2  # older snapshots are deleted once a newer one is written
# what reading a snapshot that cannot be used raises (corrupt, cut short, another layout): the one before it is read
UNREADABLE = (SkysiftError, pa.ArrowException, KeyError, TypeError, ValueError, OSError)
T = TypeVar("T")


def read_newest(store, prefix: str, read: Callable[[str], T], what: str,
                listed: list[str] | None = None) -> tuple[str, T] | None:
    """The newest snapshot under ``prefix`` (of ``listed``, its keys when already listed) that ``read`` can use, with
    its key; None without one. One that cannot be read is logged and skipped: what it was derived from is still
    there."""
    for key in reversed(store.list_keys(prefix) if listed is None else listed):
        try:
            return key, read(key)
        except UNREADABLE as exc:
            log.warning(f"{what} snapshot skipped", extra={"key": key, "error": str(exc)})
    return None


def write_snapshot(store, prefix: str, when: datetime, table: pa.Table, keep: int = KEEP) -> str | None:
    """Write ``table`` as ``<prefix><when>_<id>.parquet`` and delete the snapshots beyond the newest ``keep``; return
    its key, or None when the store refused (logged: the source it was derived from is still complete)."""
    key = f"{prefix}{when:%Y%m%dT%H%M%S%fZ}_{uuid.uuid4().hex[:8]}.parquet"
    try:
        store.write_table(key, table)
        for old in store.list_keys(prefix)[:-keep]:
            store.delete(old)
    except SkysiftError as exc:
        log.warning("snapshot not written", extra={"key": key, "error": str(exc)})
        return None
    return key
