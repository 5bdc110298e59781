"""Where each candid's features row lives (:class:`CandidIndex`), with the last features batches kept in an LRU
as numpy matrices, so that scoring candids already through the features stage reads nothing from the store."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from skysift.alerts.batches import object_ids
from skysift.errors import NotFound
from skysift.features import candid_pieces
from skysift.features.core import feature_batches
from skysift.inference.scoring import batch_feature_set_version, feature_matrix, with_object_ids
from skysift.store import keys
from skysift.store.base import ObjectStore


@dataclass
class CachedBatch:
    """A features batch in memory: its table (with objectIds), feature-set version, and a feature matrix per
    model column set, built on first use, so that a candid lookup is a row gather, not an Arrow take."""

    table: pa.Table
    version: str
    object_id: np.ndarray  # object: str, or None when unknown
    matrices: dict[tuple[str, ...], np.ndarray] = field(default_factory=dict)

    @classmethod
    def of(cls, table: pa.Table) -> CachedBatch:
        return cls(table, batch_feature_set_version(table), table.column("objectId").to_numpy(zero_copy_only=False))

    def matrix(self, columns: tuple[str, ...]) -> np.ndarray:
        X = self.matrices.get(columns)
        if X is None:  # two threads may both build it: the same values, one kept
            X = self.matrices[columns] = feature_matrix(self.table, columns)
        return X


@dataclass
class FoundRows:
    """A request's features rows, still in their cached batches: ``parts`` holds (batch, its rows, the positions
    of those rows in the request)."""

    candid: np.ndarray
    parts: list[tuple[CachedBatch, np.ndarray, np.ndarray]]

    @property
    def versions(self) -> set[str]:
        return {batch.version for batch, _, _ in self.parts}

    def object_id(self) -> np.ndarray:
        return self._gather(lambda batch: batch.object_id, np.empty(len(self.candid), dtype=object))

    def matrix(self, columns: tuple[str, ...]) -> np.ndarray:
        return self._gather(lambda batch: batch.matrix(columns), np.empty((len(self.candid), len(columns))))

    def _gather(self, source: Callable[[CachedBatch], np.ndarray], out: np.ndarray) -> np.ndarray:
        if len(self.parts) == 1:  # one batch: positions are the request's order, no scatter needed
            batch, rows, _ = self.parts[0]
            return source(batch)[rows]
        for batch, rows, positions in self.parts:
            out[positions] = source(batch)[rows]
        return out


class CandidIndex:
    """Where each candid's features row lives: sorted candids → (batch, row), built from ``features/``.

    Only the candid arrays of every batch are kept (16 bytes a row); the batches themselves are loaded only when a
    lookup needs them, into a small LRU (:class:`CachedBatch`). Refreshed in the background and once on a miss, so a
    lookup of candids in cached batches is a binary search and a row gather, without touching the store.

    Start-up reads, for each night of listed batches, its candid-index piece (written by the features stage:
    :mod:`skysift.features.candid_pieces`), then the candid column of each listed batch no piece covers, several
    at a time: a month of hourly batches is ~30 pieces instead of 720 GETs, which on S3 cost per request far more
    than per byte. A refresh reads the same way what it has not indexed yet (usually one batch, or its night's piece).
    """

    def __init__(self, store: ObjectStore, cached_batches: int = 64, read_threads: int = 16):
        self.store = store
        self.cached_batches = cached_batches
        self.read_threads = read_threads
        self._refreshed = -1e9
        self._keys: list[str] = []
        self._per_key: list[np.ndarray] = []
        self._sorted = np.empty(0, np.int64)
        self._where = np.empty((0, 2), np.int64)  # (key index, row) per sorted candid
        self._batches: OrderedDict[str, CachedBatch] = OrderedDict()
        self._lock = threading.Lock()

    def refresh(self, unless_since: float | None = None) -> int:
        """Index new features batches; return how many were added.

        ``unless_since``: skip when a refresh started after that time (concurrent misses list the store once).
        """
        with self._lock:
            if unless_since is not None and self._refreshed >= unless_since:
                return 0
            self._refreshed = time.monotonic()
            known = set(self._keys)
            new = [k for k in feature_batches(self.store) if k not in known]
            if not new:
                return 0
            read = candid_pieces.read_candids(self.store, new, self.read_threads)
            for key in new:
                if read.get(key) is not None:
                    self._keys.append(key)
                    self._per_key.append(read[key])
            self._rebuild()
            return len(new)

    def _rebuild(self) -> None:
        candids = np.concatenate(self._per_key) if self._per_key else np.empty(0, np.int64)
        where = np.concatenate([np.column_stack([np.full(len(c), i), np.arange(len(c))])
                                for i, c in enumerate(self._per_key)]) if self._per_key else np.empty((0, 2), np.int64)
        order = np.argsort(candids, kind="stable")
        candids, where = candids[order], where[order]
        last = np.r_[candids[1:] != candids[:-1], True] if len(candids) else np.empty(0, bool)
        self._sorted, self._where = candids[last], where[last]  # a candid in several batches: the latest indexed

    def _load(self, key: str) -> CachedBatch:
        """A features batch with its objectIds, cached (least recently used dropped first)."""
        batch = self._batches.get(key)
        if batch is not None:
            self._batches.move_to_end(key)
            return batch
        table = self.store.read_table(key)
        table = with_object_ids(table, object_ids(self.store, keys.parse_batch(key), table.column("candid")))
        batch = self._batches[key] = CachedBatch.of(table)
        while len(self._batches) > self.cached_batches:
            self._batches.popitem(last=False)
        return batch

    def _locate(self, candids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sorted_, where = self._sorted, self._where  # one consistent snapshot
        pos = np.searchsorted(sorted_, candids)
        pos = np.minimum(pos, max(len(sorted_) - 1, 0))
        found = (sorted_[pos] == candids) if len(sorted_) else np.zeros(len(candids), bool)
        return found, where[pos] if len(sorted_) else np.empty((len(candids), 2), np.int64)

    def rows(self, candids: list[int]) -> FoundRows:
        """Features rows of ``candids`` in the order given; NotFound names the missing."""
        started = time.monotonic()
        wanted = np.asarray(candids, dtype=np.int64)
        found, where = self._locate(wanted)
        if not found.all():
            self.refresh(unless_since=started)
            found, where = self._locate(wanted)
        if not found.all():
            missing = wanted[~found]
            raise NotFound(
                f"{len(missing)} of {len(wanted)} candids are in no features/ batch of {self.store.url}: "
                f"{missing[:10].tolist()}{' ...' if len(missing) > 10 else ''} (run the features stage, or send the "
                "raw packets to ScoreAlerts)"
            )
        key_of = where[:, 0]
        with self._lock:
            if len(key_of) and (key_of == key_of[0]).all():  # the usual case: one batch (and always for one candid)
                parts = [(self._load(self._keys[key_of[0]]), where[:, 1], np.arange(len(wanted)))]
            else:
                parts = []
                for key_index in np.unique(key_of):
                    positions = np.flatnonzero(key_of == key_index)
                    parts.append((self._load(self._keys[key_index]), where[positions, 1], positions))
        return FoundRows(wanted, parts)
