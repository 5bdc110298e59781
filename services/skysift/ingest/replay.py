"""Replay source: alert packets from a file or a directory (Avro containers, Rubin wire packets, parquet).

It behaves like a one-partition topic: files in sorted path order are the messages, and a cursor kept in the
store (``state/ingest/replay/<path hash>.json``) is the committed offset, advanced only after the poll's
parquet is durable. So successive polls walk through a large directory instead of re-reading its start.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path

from skysift.alerts.avro import MAGIC, FramingError, split_container
from skysift.alerts.decode import PARQUET_MAGIC, Packet
from skysift.errors import InvalidArgument, NotFound
from skysift.store.base import ObjectStore

SUFFIXES = (".avro", ".parquet", ".bin")
TOPIC = "replay"


def packet_files(path: str) -> list[Path]:
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        return sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in SUFFIXES and not f.name.startswith("."))
    raise InvalidArgument(f"replay path {path!r} does not exist (expected a file or directory of alert packets)")


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


class ReplaySource:
    def __init__(self, path: str, store: ObjectStore):
        self.path = str(Path(path).resolve())
        self.files = packet_files(path)
        self.store = store
        self.cursor_key = f"state/ingest/replay/{hashlib.sha1(self.path.encode()).hexdigest()[:16]}.json"
        self._next: int | None = None

    def _cursor(self) -> int:
        from skysift.ingest.core import store_errors

        with store_errors(self.store):
            try:
                return int(json.loads(self.store.get_bytes(self.cursor_key))["next"])
            except NotFound:
                return 0

    def fetch(self, max_alerts: int, timeout_s: float) -> list[Packet]:
        """Whole files from the cursor on until ``max_alerts`` alerts are reached (the last file may overshoot)."""
        deadline = time.monotonic() + timeout_s
        start = index = self._cursor()
        packets, n = [], 0
        while index < len(self.files) and n < max_alerts and time.monotonic() < deadline:
            data = self.files[index].read_bytes()
            packets.append(Packet(data, topic=TOPIC, offset=index, source=str(self.files[index])))
            n += records_in(data)
            index += 1
        self._next = index if index > start else None
        return packets

    def commit(self) -> None:
        if self._next is not None:
            self.store.put_bytes(self.cursor_key, json.dumps({"path": self.path, "next": self._next}).encode())
            self._next = None
