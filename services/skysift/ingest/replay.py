"""Replay source: alert packets from a file, a directory, or keys of an object store (Avro containers, Rubin wire
packets, parquet, skysift's own alerts files).

Replay paths:
- a file or a directory on this machine (every ``.avro``, ``.parquet`` and ``.bin`` file under it);
- ``store://<prefix>``: the keys under ``<prefix>`` in the configured store, e.g.
  ``store://alerts/survey=ztf/night=20250101/``. Its alerts batches are already here, exactly once: they are not
  written again but passed on as they are, so the later stages (enrichment, features, inference) run on that
  night again;
- ``s3://<bucket>/<prefix>``: the keys under ``<prefix>`` in another bucket of the configured S3 endpoint (moving
  a night between buckets, or importing parquet dumps): ingested like files, filtered and deduplicated.
Other stages' batch files (``*_features.parquet`` ...) under the path are skipped.

It behaves like a one-partition topic: files (keys) in sorted order are the messages, and a cursor kept in the
store (``state/ingest/replay/<path hash>.json``) is the committed offset, advanced only after the poll's
parquet is durable. So successive polls walk through a large directory instead of re-reading its start. The cursor
holds the names already read, not a position: a file added between polls (a backfill writing into an old night's
folder) sorts anywhere in the listing, and a position would then skip a file or read one twice.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from skysift.alerts.avro import MAGIC, FramingError, split_container
from skysift.alerts.decode import PARQUET_MAGIC, Packet
from skysift.errors import InvalidArgument, NotFound
from skysift.store import open_store
from skysift.store.base import ObjectStore, store_errors
from skysift.store.keys import BATCH_STAGES, Batch, parse_batch

SUFFIXES = (".avro", ".parquet", ".bin")
TOPIC = "replay"
STORE_SCHEME = "store://"
S3_SCHEME = "s3://"
NOT_ALERTS = ("state/", "dlq/")  # a store's bookkeeping and dead letters: parquet, but no alert packets
_OTHER_STAGE = re.compile(rf"_({'|'.join(s for s in BATCH_STAGES if s != 'alerts')})\.parquet$")


def is_store_path(path: str) -> bool:
    return path.startswith((STORE_SCHEME, S3_SCHEME))


def is_packet_name(name: str) -> bool:
    """A file (key) that may hold alerts: not hidden, not a temp file, not another stage's batch."""
    base = name.rsplit("/", 1)[-1]
    return base.endswith(SUFFIXES) and not base.startswith(".") and not _OTHER_STAGE.search(base)


# A directory's listing is trusted only once its mtime is older than this when listed: a file created in the same
# timestamp tick as an earlier change (coarse-grained filesystems) would otherwise leave the mtime unchanged.
MTIME_SETTLED_NS = 2_000_000_000


class DirectoryListings:
    """Sorted packet files under a directory, listed again only where a directory's mtime changed.

    Why: a poll opens the replay source afresh, and listing, stat-ing and sorting every path of a 6,000-file
    directory took ~130 ms a poll. Adding, removing or renaming an entry changes its directory's mtime, so a
    subdirectory whose mtime is unchanged (and settled, :data:`MTIME_SETTLED_NS`) keeps its cached entries; only
    the directories themselves are stat-ed at each poll. The order is that of sorted paths (name by name, depth
    first), so the cursor walks the files as before.
    """

    def __init__(self):
        self._entries: dict[str, tuple[int, list[tuple[str, bool]]]] = {}  # dir -> (mtime_ns, [(path, is a dir)])
        self._lock = threading.Lock()
        self.scanned = 0  # directories listed (not served from the cache) by the last call

    def files(self, root: str) -> list[str]:
        with self._lock:
            self.scanned = 0
            out: list[str] = []
            self._walk(root, out)
            return out

    def _walk(self, directory: str, out: list[str]) -> None:
        try:
            mtime = os.stat(directory).st_mtime_ns
        except FileNotFoundError:  # removed while listed
            self._entries.pop(directory, None)
            return
        cached = self._entries.get(directory)
        if cached is not None and cached[0] == mtime:
            entries = cached[1]
        else:
            entries = self._scan(directory)
            self.scanned += 1
            if time.time_ns() - mtime > MTIME_SETTLED_NS:
                self._entries[directory] = (mtime, entries)
        for path, is_dir in entries:
            if is_dir:
                self._walk(path, out)
            else:
                out.append(path)

    @staticmethod
    def _scan(directory: str) -> list[tuple[str, bool]]:
        """The directory's packet files and subdirectories, by name (sorted paths compare name by name, so a
        directory's files and subdirectories interleave)."""
        entries = []
        with os.scandir(directory) as listing:
            for entry in listing:
                if entry.is_dir(follow_symlinks=False):
                    entries.append((entry.name, True))
                elif entry.is_file() and is_packet_name(entry.name):
                    entries.append((entry.name, False))
        return [(os.path.join(directory, name), is_dir) for name, is_dir in sorted(entries)]


LISTINGS = DirectoryListings()  # kept across polls (each poll opens its replay source again)


def packet_files(path: str) -> list[str]:
    p = Path(path)
    if p.is_file():
        return [str(p)]
    if p.is_dir():
        return LISTINGS.files(str(p))
    raise InvalidArgument(f"replay path {path!r} does not exist (expected a file or directory of alert packets, "
                          f"or {STORE_SCHEME}<prefix> / {S3_SCHEME}<bucket>/<prefix>)")


def records_in(data: bytes) -> int:
    """Alerts a packet holds, without decoding it (a container or parquet file can hold many)."""
    try:
        if data.startswith(MAGIC):
            return split_container(data).n_records
        if data.startswith(PARQUET_MAGIC):
            import pyarrow.parquet as pq

            return pq.ParquetFile(io.BytesIO(data)).metadata.num_rows
    except (FramingError, OSError, ValueError):
        pass  # a bad packet counts as one; the decoder sends it to the dead-letter queue
    return 1


@dataclass
class StoredBatch(Packet):
    """An alerts batch already in the destination store (``store://`` replay): the poll passes it on unchanged."""

    batch: Batch | None = None


class ReplaySource:
    """Named packets (paths or keys) in sorted order, read one at a time from the committed cursor on."""

    def __init__(self, where: str, names: list[str], read: Callable[[str], bytes], store: ObjectStore,
                 passes_on: Callable[[str], bool] = lambda name: False):
        self.where = where
        self.names = names
        self.read = read
        self.store = store
        self.passes_on = passes_on
        self.cursor_key = f"state/ingest/replay/{hashlib.sha1(where.encode()).hexdigest()[:16]}.json"
        self._done: set[str] = set()  # names read by committed polls
        self._fetched: list[str] = []  # names read by this poll, committed with it

    def _committed(self) -> set[str]:
        with store_errors(self.store):
            try:
                cursor = json.loads(self.store.get_bytes(self.cursor_key))
            except NotFound:
                return set()
        return set(cursor["done"])

    def _packet(self, index: int) -> tuple[Packet, int]:
        name = self.names[index]
        data = self.read(name)
        n = records_in(data)
        if self.passes_on(name):
            batch = parse_batch(name, "alerts")
            return StoredBatch(data, topic=TOPIC, offset=index, source=name, batch=Batch(name, batch.survey, n)), n
        return Packet(data, topic=TOPIC, offset=index, source=name), n

    def fetch(self, max_alerts: int, timeout_s: float) -> list[Packet]:
        """Whole files from the cursor on until ``max_alerts`` alerts are reached: the file that reaches the bound
        is taken whole (a file is one message), so nothing is ever given back."""
        deadline = time.monotonic() + timeout_s
        self._done, self._fetched = self._committed(), []
        pending = (i for i, name in enumerate(self.names) if name not in self._done)
        packets, n = [], 0
        with store_errors(self.store, reading=f"replay source {self.where}"):
            for index in pending:
                if n >= max_alerts or time.monotonic() >= deadline:
                    break
                packet, alerts = self._packet(index)
                packets.append(packet)
                self._fetched.append(self.names[index])
                n += alerts
        return packets

    def reset(self) -> int:
        """Forget which names were read, so the next poll reads the path from its start; return how many were read.
        Alerts stored already are still skipped then, as duplicates by candid."""
        with store_errors(self.store):
            read = len(self._committed())
            self.store.delete(self.cursor_key)
        self._done, self._fetched = set(), []
        return read

    def commit(self) -> None:
        if self._fetched:
            done = sorted(self._done.union(self._fetched))
            self.store.put_bytes(self.cursor_key, json.dumps({"path": self.where, "done": done}).encode())
            self._done, self._fetched = set(done), []


def _alerts_batch(key: str) -> bool:
    try:
        return bool(parse_batch(key, "alerts"))
    except InvalidArgument:
        return False


def open_replay(path: str, store: ObjectStore, settings) -> ReplaySource:
    """The replay source for ``path``: a local file or directory, ``store://<prefix>`` or ``s3://<bucket>/<prefix>``.

    An ``s3://`` path inside the configured store is read as the ``store://`` path it is."""
    root = store.url.rstrip("/") + "/"
    if path.startswith(S3_SCHEME) and store.url.startswith(S3_SCHEME) and path.startswith(root):
        path = STORE_SCHEME + path.removeprefix(root)
    if not is_store_path(path):
        return ReplaySource(str(Path(path).resolve()), packet_files(path), lambda name: Path(name).read_bytes(), store)
    passes_on = _alerts_batch
    if path.startswith(STORE_SCHEME):
        origin, prefix = store, path.removeprefix(STORE_SCHEME)
    else:
        bucket, _, prefix = path.removeprefix(S3_SCHEME).partition("/")
        if not bucket:
            raise InvalidArgument(f"replay path {path!r} names no bucket: expected {S3_SCHEME}<bucket>/<prefix>")
        origin, passes_on = open_store(S3_SCHEME + bucket, settings), lambda key: False
    if prefix.startswith("/") or ".." in prefix.split("/"):
        raise InvalidArgument(f"replay path {path!r}: the key prefix must be relative, without '..'")
    with store_errors(origin):
        names = [k for k in origin.list_keys(prefix) if is_packet_name(k) and not k.startswith(NOT_ALERTS)]
    if not names:
        raise InvalidArgument(f"nothing to replay at {path!r}: no .avro, .parquet or .bin key under that prefix")
    return ReplaySource(path, names, origin.get_bytes, store, passes_on)
