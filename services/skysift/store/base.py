"""The object-store interface every stage writes through, and :func:`open_store` that picks a backend.

Writes are whole-object and atomic: a reader sees the old object, the new one, or none, never half a
parquet file. Keys are plain ``/``-separated strings relative to the store root (see :mod:`skysift.store.keys`).
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from contextlib import contextmanager

import pyarrow as pa
import pyarrow.parquet as pq

from skysift.errors import FailedPrecondition, InvalidArgument, SkysiftError, Unavailable


def check_key(key: str) -> str:
    """Reject keys that could escape the store root or hit a temp file."""
    if not key or key.startswith("/") or ".." in key.split("/") or key.endswith("/"):
        raise InvalidArgument(f"invalid object key {key!r}: expected a relative path like 'alerts/.../x.parquet'")
    return key


class ObjectStore(ABC):
    """Atomic whole-object storage addressed by key."""

    url: str

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key`` atomically, replacing any previous object."""

    @abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Write only if ``key`` does not exist; False when it already did (append-only records)."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Read the object at ``key``; raises :class:`~skysift.errors.NotFound` when absent."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list_keys(self, prefix: str = "", start_after: str | None = None) -> list[str]:
        """Every key under ``prefix`` (only those after ``start_after``, when given), sorted."""

    @abstractmethod
    def delete(self, key: str) -> None: ...

    def write_table(self, key: str, table: pa.Table) -> str:
        """Write ``table`` as parquet (zstd) at ``key`` atomically; return the key."""
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        self.put_bytes(key, sink.getvalue())
        return key

    def read_table(self, key: str, columns: list[str] | None = None) -> pa.Table:
        data = self.get_bytes(key)
        with parquet_errors(key, self.url):
            return pq.read_table(io.BytesIO(data), columns=columns)

    def read_schema(self, key: str) -> pa.Schema:
        data = self.get_bytes(key)
        with parquet_errors(key, self.url):
            return pq.read_schema(io.BytesIO(data))


@contextmanager
def store_errors(store: ObjectStore, reading: str | None = None):
    """Any failure to reach the store is :class:`Unavailable` (a poll exits non-zero; the CronJob retries): the
    S3 store raises skysift errors already, a local directory or a replay's files raise OSError. ``reading`` names
    what is read when it is not ``store`` (a replay's files or another bucket), so the message points at it."""
    try:
        yield
    except SkysiftError:
        raise
    except OSError as exc:
        raise Unavailable(f"{reading or f'object store {store.url}'} unavailable: {type(exc).__name__}: {exc}") from None


@contextmanager
def parquet_errors(key: str, url: str):
    """An object that is not parquet (put there by hand or by another tool) is a clear error, not an internal one."""
    try:
        yield
    except pa.ArrowException as exc:
        raise FailedPrecondition(f"object {key!r} in store {url} is not a readable parquet file: {exc}") from None
