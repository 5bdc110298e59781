"""The candid index's pieces: per survey and observing night, the key and candids of every features batch of that
night in one small parquet object (``state/candid-index/survey=<s>/night=<n>/<digest>.parquet``).

Why: the inference service indexes where each candid's features row lives; on S3 a GET costs per request far more
than per byte, and a month of hourly batches is 720 candid columns (4-10 s at start-up on a loaded server), where
a month of pieces is ~30 objects. The writer keeps them, as it knows the candids it has just written: after each
batch the features stage brings up to date, level-triggered, the piece of that batch's night and of up to
:data:`NIGHTS_A_RUN` other nights whose piece is missing or does not cover the night's listed batches (a run that
failed half-way, batches written before pieces existed or by another writer), newest night first. Nights still
growing are left alone: those dated within :data:`OPEN` of now, and those given a batch polled within it (a
backfill or a replay writing into an old night); rewriting a growing night's piece after every batch would cost a
GET and a PUT of the whole night each time (80 MB at Rubin's 10^7 alerts a night: quadratic over a backfill's
thousands of batches), so a start reads their batches one by one until the night is quiet. A batch written into a
growing night that has a piece deletes it (the batch may be a rewrite, whose old candids the piece holds). A piece is named by a digest of the batch keys listed when it was written, so whether a night is up
to date is known from two listings, without a GET; a night rewritten concurrently by two writers keeps whichever
piece, and the next run sees what it lacks.

A piece is derived and never replaces the batches. Readers take from a piece only batches they listed (a deleted
batch is not indexed) and read the candid column of each listed batch no piece covers; a piece that cannot be
read, or that vanished between listing and GET, is skipped. A missing or stale compaction costs GETs, never a
candid.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from skysift.backlog import stem_time
from skysift.concurrency import threaded_map
from skysift.errors import FailedPrecondition, NotFound, SkysiftError
from skysift.features.core import feature_batches
from skysift.store.keys import parse_batch
from skysift.store.snapshots import UNREADABLE

log = logging.getLogger(__name__)

PREFIX = "state/candid-index/"
NIGHTS_A_RUN = 4  # nights besides the written batch's that one run of the features stage may compact
OPEN = timedelta(days=1)  # nights dated this close to now may still get batches: not compacted yet
Night = tuple[str, str]  # (survey, night)


def digest(batch_keys: list[str]) -> str:
    """What names a piece: the night's batch keys it was written for, hashed."""
    return hashlib.sha256("\n".join(sorted(batch_keys)).encode()).hexdigest()[:16]


def by_night(batch_keys: list[str]) -> dict[Night, list[str]]:
    out: dict[Night, list[str]] = defaultdict(list)
    for key in batch_keys:
        batch = parse_batch(key)
        out[(batch.survey, batch.night)].append(key)
    return dict(out)


def piece_keys(store) -> dict[Night, list[str]]:
    """The stored pieces of each night (one listing), in key order."""
    out: dict[Night, list[str]] = defaultdict(list)
    for key in store.list_keys(PREFIX):
        parts = key.removeprefix(PREFIX).split("/")
        if len(parts) == 3 and parts[0].startswith("survey=") and parts[1].startswith("night="):
            out[(parts[0].removeprefix("survey="), parts[1].removeprefix("night="))].append(key)
    return dict(out)


def _piece_for(pieces: list[str], listed: list[str]) -> str:
    """The piece written for exactly ``listed``, else the last in key order (one of the night's: it covers part of it)."""
    name = f"{digest(listed)}.parquet"
    return next((key for key in pieces if key.endswith("/" + name)), pieces[-1])


def read_piece(store, key: str) -> dict[str, np.ndarray]:
    """A piece's batch key -> candids; empty when it cannot be read or vanished (logged: the batches remain)."""
    try:
        table = store.read_table(key)
        meta = json.loads(table.schema.metadata[b"skysift.batches"])
        if sum(meta["rows"]) != table.num_rows:
            raise ValueError(f"{table.num_rows} candids for {sum(meta['rows'])} rows listed")
        bounds = np.cumsum(meta["rows"])[:-1]
        return dict(zip(meta["keys"], np.split(table.column("candid").to_numpy(), bounds), strict=True))
    except NotFound:
        return {}  # replaced by a newer piece since the listing
    except UNREADABLE as exc:
        log.warning("candid-index piece skipped", extra={"key": key, "error": str(exc)})
        return {}


def candid_column(store, key: str) -> np.ndarray | None:
    """The candid column of a features batch; None when it cannot be read (one unreadable object must not stop every
    candid lookup)."""
    try:
        return store.read_table(key, columns=["candid"]).column("candid").to_numpy()
    except (FailedPrecondition, NotFound) as exc:
        log.warning("skipping unreadable features batch", extra={"key": key, "error": str(exc)})
        return None


def read_candids(store, batch_keys: list[str], threads: int = 16) -> dict[str, np.ndarray]:
    """The candids of each of ``batch_keys`` (listed features batches): from each night's piece, then the candid column
    of each batch no piece covers, ``threads`` GETs at a time. A batch that cannot be read is left out."""
    listed = by_night(batch_keys)
    stored = piece_keys(store)
    chosen = [_piece_for(stored[night], keys_) for night, keys_ in listed.items() if night in stored]
    wanted = set(batch_keys)
    found = {k: c for piece in threaded_map(lambda key: read_piece(store, key), chosen, threads)
             for k, c in piece.items() if k in wanted}
    unread = [k for k in batch_keys if k not in found]
    found.update((k, c) for k, c in zip(unread, threaded_map(lambda key: candid_column(store, key), unread, threads))
                 if c is not None)
    return found


def _write_piece(store, night: Night, listed: list[str], candids: dict[str, np.ndarray], replaces: list[str]) -> str:
    covered = [k for k in sorted(listed) if k in candids]
    table = pa.table({"candid": np.concatenate([candids[k] for k in covered]) if covered else np.empty(0, np.int64)})
    meta = {"keys": covered, "rows": [len(candids[k]) for k in covered]}
    survey, date = night
    key = f"{PREFIX}survey={survey}/night={date}/{digest(listed)}.parquet"
    store.write_table(key, table.replace_schema_metadata({"skysift.batches": json.dumps(meta)}))
    for old in replaces:
        if old != key:
            store.delete(old)
    return key


def _growing(night: Night, batch_keys: list[str], now: datetime) -> bool:
    """Whether ``night`` may still get batches: dated within :data:`OPEN` of ``now``, or given one polled within it."""
    return night[1] >= f"{now - OPEN:%Y%m%d}" or any(now - stem_time(parse_batch(k)) < OPEN for k in batch_keys)


def bring_up_to_date(store, written: dict[str, np.ndarray] | None = None, nights_a_run: int = NIGHTS_A_RUN,
                     threads: int = 16, now: datetime | None = None) -> list[str]:
    """Rewrite the piece of each night of ``written`` (batch key -> candids, just written: a rewritten batch may hold
    other candids under the same key) and of up to ``nights_a_run`` other nights whose piece does not match their
    listed batches, nights still growing at ``now`` excepted (:func:`_growing`: a written batch takes its growing
    night's piece away); return the pieces written. Best effort: a store failure
    is logged and leaves the batches, which give the same index."""
    written = written or {}
    now = now or datetime.now(UTC)
    try:
        listed = by_night(feature_batches(store))
        stored = piece_keys(store)
        for key in written:  # written but not listed yet (a store whose listing lags): still compacted
            batch = parse_batch(key)
            if key not in listed.setdefault((batch.survey, batch.night), []):
                listed[(batch.survey, batch.night)].append(key)
        growing = {night for night, batch_keys in listed.items() if _growing(night, batch_keys, now)}
        own = {(parse_batch(k).survey, parse_batch(k).night) for k in written}
        for night in own & growing:
            for key in stored.get(night, []):
                store.delete(key)
        stale = [night for night in sorted(listed, key=lambda n: (n[1], n[0]), reverse=True)
                 if night not in own and night not in growing
                 and not any(k.endswith(f"/{digest(listed[night])}.parquet") for k in stored.get(night, []))]
        out = []
        for night in [*sorted(own - growing), *stale[:nights_a_run]]:
            pieces = stored.get(night, [])
            candids = read_piece(store, _piece_for(pieces, listed[night])) if pieces else {}
            candids.update(written)
            unread = [k for k in listed[night] if k not in candids]
            candids.update((k, c) for k, c in zip(unread, threaded_map(lambda key: candid_column(store, key), unread,
                                                                    threads)) if c is not None)
            out.append(_write_piece(store, night, listed[night], candids, pieces))
        return out
    except SkysiftError as exc:
        log.warning("candid-index pieces not brought up to date", extra={"error": str(exc)})
        return []
