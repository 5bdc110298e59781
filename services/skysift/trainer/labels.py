"""Labels as append-only events in the object store: one JSON object per event, never rewritten.

Why events and not a labels.csv: two labellers (or a labeller and an import) writing at the same time must
not lose each other's work, and a relabelled alert keeps its history. Each event gets its own key
(``labels/events/<utc>_<event_id>.json``, written with put-if-absent), so concurrent writers never touch the
same object. The current label of a candid is its latest event (keys sort by time, then event id).
Events are immutable, so a :class:`LabelStore` caches every event it has read and only fetches new keys.

Snapshots make a fresh process read a million events in seconds instead of a million GETs: a round compacts the
events it has read into ``labels/snapshots/<utc>_<id>.parquet`` (derived, written after the events, never replacing
them; the events stay the source of truth). A reader takes the newest snapshot, then lists only the event keys
dated from its listing time minus :data:`OVERLAP` (S3 ``StartAfter``), which finds every event written since: an
event is dated by its writer's clock at submit, within the clock skew of the snapshot's. An event submitted with an
older date (an import of an old labels.csv) would sort before that point, so its writer first records it under
``labels/late/<utc of writing>_<event_id>.json`` as well, and readers list those from the same point. A snapshot
that cannot be read is skipped: the events alone give the same labels.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from skysift import modeltags, validation
from skysift.concurrency import threaded_map
from skysift.errors import InvalidArgument
from skysift.modeltags import ModelTag
from skysift.store import keys
from skysift.store.snapshots import read_newest, write_snapshot

EVENTS_PREFIX = "labels/events/"
SOURCES = ("human", "import", "oracle")
EVENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
CSV_COLUMNS = ("candid", "objectId", "label", "timestamp")  # the prototype's labels.csv
EXPORT_COLUMNS = (*CSV_COLUMNS, "user", "source")  # who gave each label: the prototype's file dropped it
EVENT_COLUMNS = (*EXPORT_COLUMNS, "model_tag", "experiment", "round", "comment", "event_id")  # an event, whole
FUTURE_TOLERANCE = timedelta(minutes=5)  # clock skew allowed between a labeller's machine and the server
SNAPSHOTS_PREFIX = "labels/snapshots/"
LATE_PREFIX = "labels/late/"
# How far before a snapshot's listing a reader lists again: more than the clock skew between writers (dated by the
# server that submits them) and than FUTURE_TOLERANCE; events dated earlier than now - OVERLAP / 2 are "late".
OVERLAP = timedelta(minutes=15)
SNAPSHOT_AFTER = 1000  # events read beyond the newest snapshot that make compact() write a new one
SNAPSHOT_SCHEMA = pa.schema([
    pa.field("key", pa.string()), pa.field("candid", pa.int64()), pa.field("label", pa.string()),
    pa.field("user", pa.string()), pa.field("object_id", pa.string()), pa.field("model_tag", pa.string()),
    pa.field("timestamp", pa.timestamp("us", tz="UTC")), pa.field("source", pa.string()),
    pa.field("event_id", pa.string()), pa.field("experiment", pa.string()), pa.field("round", pa.int64()),
    pa.field("comment", pa.string()),
])

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelEvent:
    candid: int
    label: str
    user: str
    object_id: str = ""
    model_tag: str = ""  # the model the labeller was looking at; labels themselves are tag-independent
    timestamp: datetime | None = None  # set on submit when absent
    source: str = "human"
    event_id: str = ""  # set on submit when absent
    experiment: str = ""
    round: int | None = None
    comment: str = ""

    def to_json(self) -> bytes:
        d = asdict(self)
        d["timestamp"] = self.timestamp.isoformat() if self.timestamp else None
        return json.dumps(d, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> LabelEvent:
        d = json.loads(data)
        d["timestamp"] = datetime.fromisoformat(d["timestamp"]) if d.get("timestamp") else None
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def validate(event: LabelEvent) -> LabelEvent:
    """Check one event and fill in what the server owns (timestamp, event id); raise InvalidArgument."""
    if isinstance(event.candid, bool) or not isinstance(event.candid, int) or event.candid <= 0:
        raise InvalidArgument(f"candid must be a positive integer, got {event.candid!r}")
    if event.label not in modeltags.labels():
        raise InvalidArgument(f"unknown label {event.label!r} for candid {event.candid}; expected one of {', '.join(modeltags.labels())}")
    if not (event.user or "").strip():
        raise InvalidArgument(f"label for candid {event.candid} has no user")
    if event.source not in SOURCES:
        raise InvalidArgument(f"unknown label source {event.source!r}; expected one of {', '.join(SOURCES)}")
    if event.model_tag and event.model_tag not in modeltags.tags():
        raise InvalidArgument(f"unknown model tag {event.model_tag!r}; expected one of {', '.join(modeltags.tags())}")
    if event.experiment:  # the queue the label answers, when it answers one: the rules GetQueue applies
        validation.check_experiment(event.experiment)
    validation.check_round(event.round)
    validation.check_object_id(event.object_id)
    validation.check_comment(event.comment)
    if event.event_id and not EVENT_ID.fullmatch(event.event_id):  # it names the event's object
        raise InvalidArgument(f"event id {event.event_id[:80]!r} for candid {event.candid}: expected 1-64 of "
                              "letters, digits, '-' and '_'")
    ts = event.timestamp or datetime.now(UTC)
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    if ts - datetime.now(UTC) > FUTURE_TOLERANCE:  # a future event would stay "latest" and hide every later label
        raise InvalidArgument(f"label for candid {event.candid} is dated in the future ({ts.isoformat()})")
    return replace(event, user=event.user.strip(), timestamp=ts.astimezone(UTC),
                   event_id=event.event_id or uuid.uuid4().hex)


def event_key(event: LabelEvent) -> str:
    return keys.label_event_key(event.timestamp, event.event_id)


def late_key(written: datetime, event_id: str) -> str:
    return f"{LATE_PREFIX}{written.astimezone(UTC):%Y%m%dT%H%M%S%fZ}_{event_id}.json"


def _listed_at(snapshot_key: str) -> datetime | None:
    """When a snapshot's listing began, from its key (:func:`~skysift.store.snapshots.write_snapshot` dates it so);
    None for a key not named that way."""
    try:
        return datetime.strptime(snapshot_key.removeprefix(SNAPSHOTS_PREFIX)[:22], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None


EVENT_FIELDS = tuple(LabelEvent.__dataclass_fields__)  # the snapshot's columns after "key", in this order


def snapshot_table(events: dict[str, LabelEvent]) -> pa.Table:
    """Column by column (a million events: seconds, where a row-wise build took minutes)."""
    columns = {"key": list(events)}
    values = list(events.values())
    for name in EVENT_FIELDS:
        columns[name] = [getattr(e, name) for e in values]
    return pa.table(columns, schema=SNAPSHOT_SCHEMA)


def snapshot_events(table: pa.Table) -> dict[str, LabelEvent]:
    """Events built positionally from the columns (the fields' order is the schema's)."""
    columns = [_python_values(table.column(name)) for name in EVENT_FIELDS]
    return dict(zip(table.column("key").to_pylist(), (LabelEvent(*row) for row in zip(*columns))))


def _python_values(column: pa.ChunkedArray) -> list:
    """A column as Python values; UTC timestamps through numpy, as Arrow's own conversion of tz-aware timestamps
    builds each one through a time-zone lookup (12 s per million here, 1.4 s this way)."""
    if pa.types.is_timestamp(column.type) and column.null_count == 0:
        return [t.replace(tzinfo=UTC) for t in column.cast(pa.timestamp("us")).to_numpy().astype(object)]
    return column.to_pylist()


def _extended(base: pa.Table | None, newer: dict[str, LabelEvent]) -> pa.Table:
    """``base`` (columns in key order) with ``newer`` appended as columns, in key order: only ``newer`` is sorted when
    it all sorts after ``base`` (the usual case: events written since the snapshot), the whole only when it does not
    (late imports)."""
    added = snapshot_table(dict(sorted(newer.items())))
    if base is None:
        return added
    if not newer:
        return base
    table = pa.concat_tables([base, added])
    if base.num_rows and min(newer) <= base.column("key")[-1].as_py():  # a late import sorts inside
        table = table.take(pc.sort_indices(table, [("key", "ascending")]))
    return table


def _keys_in(table: pa.Table | None, names: list[str]) -> set[str]:
    """Those of ``names`` that are keys of ``table``: its key column probed against the few names in Arrow (hashing
    the million keys instead took 20x longer)."""
    if table is None or not names:
        return set()
    keys_ = table.column("key")
    return set(keys_.filter(pc.is_in(keys_, value_set=pa.array(names, pa.string()))).to_pylist())


def _codes(column: pa.ChunkedArray) -> np.ndarray:
    """Integers that are equal where the values are: the values themselves for integers, else dictionary codes."""
    if pa.types.is_integer(column.type):
        return column.to_numpy()
    return pc.index_in(column, value_set=pc.unique(column)).to_numpy()


def _last_rows(table: pa.Table, by: list[str]) -> np.ndarray:
    """Row numbers of the last row (in key order: the latest event) of each group of equal ``by`` values, ordered by
    those values: one numpy sort, where Arrow's group-by and takes took seconds per million rows."""
    codes = [_codes(table.column(name)) for name in by]
    order = np.lexsort([np.arange(table.num_rows), *reversed(codes)])
    same_as_next = np.zeros(table.num_rows, bool)
    same_as_next[:-1] = True
    for values in (c[order] for c in codes):
        same_as_next[:-1] &= values[1:] == values[:-1]
    return order[~same_as_next]


def latest_of(table: pa.Table, candids=None, columns: list[str] | None = None) -> pa.Table:
    """The latest event of each candid (of ``candids`` only, when given) as columns (``columns`` only, when given: a
    take of the million keys and comments is most of the time), by candid: "latest wins"."""
    if candids is not None:
        wanted = pa.array(np.unique(np.asarray(list(candids), dtype=np.int64)))
        table = table.filter(pc.is_in(table.column("candid"), value_set=wanted))
    rows = _last_rows(table, ["candid"])
    return (table if columns is None else table.select(columns)).take(rows)


def label_targets(labels: pa.ChunkedArray, tag: ModelTag) -> pa.Array:
    """Each label's target under ``tag`` (null: not used), looked up once per distinct label."""
    distinct = pc.unique(labels)
    targets = pa.array([tag.target(label) for label in distinct.to_pylist()], pa.int64())
    return targets.take(pc.index_in(labels, value_set=distinct).combine_chunks())


def table_events(table: pa.Table) -> list[LabelEvent]:
    """The rows of an events table as :class:`LabelEvent` objects, for the callers that want objects (few rows)."""
    return list(snapshot_events(table).values())


def latest_events(events: pa.Table, candids=None) -> dict[int, LabelEvent]:
    """The current label of each candid of ``events`` (of ``candids`` only, when given) as an object."""
    return {e.candid: e for e in table_events(latest_of(events, candids))}


class LabelStore:
    """Submit and read label events; safe to share between threads and between processes.

    Reads are columnar (:meth:`table`, then :func:`latest_of` and :func:`label_conflicts` on it): a round over a
    million events never builds an object per event, and lists them once; :meth:`events`, :meth:`latest` and
    :meth:`history` build objects for what they return.
    """

    def __init__(self, store, read_threads: int = 16, snapshot_after: int = SNAPSHOT_AFTER, snapshots: bool = True):
        self.store = store
        self.read_threads = read_threads
        self.snapshot_after = snapshot_after  # events read beyond the newest snapshot that make a read write one
        self.snapshots = snapshots  # False: every event object is read, and no snapshot is written
        self._cache: dict[str, LabelEvent] = {}  # the event objects read (those listed since the snapshot)
        self._lock = threading.Lock()
        self._snapshot_key: str | None = None  # the snapshot last read, kept: snapshots never change once written
        self._snapshot_table: pa.Table | None = None
        self._snapshot_listed_at: datetime | None = None

    def submit(self, events: list[LabelEvent]) -> list[str]:
        """Validate every event first (all or nothing), then write each to its own key; return the event ids.

        An event whose key already exists (the same import run twice) is not written again.
        """
        if not events:
            raise InvalidArgument("no label events to submit")
        checked = [validate(e) for e in events]
        now = datetime.now(UTC)
        for event in checked:
            if event.timestamp < now - OVERLAP / 2:  # recorded where snapshot readers look (module docstring)
                self.store.put_if_absent(late_key(now, event.event_id), event.to_json())
            self.store.put_if_absent(event_key(event), event.to_json())
        return [e.event_id for e in checked]

    def events(self) -> list[LabelEvent]:
        """Every event, oldest first (key order: UTC time, then event id)."""
        return table_events(self.table())

    def table(self) -> pa.Table:
        """Every event as columns (:data:`SNAPSHOT_SCHEMA`) in key order: the newest snapshot, then the events listed
        since (module docstring), each listed once. The snapshot is read while the events written after its listing
        began (dated in its key) are listed and fetched: both take seconds on S3 at 10^6 events, and neither needs
        the other; should the newest snapshot prove unreadable, the listing is made again from the one read."""
        started = datetime.now(UTC)
        snapshot = listed_at = guess = names = late = None
        if self.snapshots:
            snapshot_keys = self.store.list_keys(SNAPSHOTS_PREFIX)
            guess = _listed_at(snapshot_keys[-1]) if snapshot_keys else None
            with ThreadPoolExecutor(max_workers=1) as reader:
                pending = reader.submit(self._snapshot, snapshot_keys)
                if guess is not None:
                    names, late = self._listed_since(guess)
                    after = (keys.label_event_key(guess, ""), late_key(guess, ""))  # in no snapshot: fetched now
                    self._fetch_missing([k for k in names if k > after[0]] + [k for k in late if k > after[1]])
                snapshot, listed_at = pending.result()
        if names is None or listed_at != guess:
            names, late = self._listed_since(listed_at)
        snapshotted = _keys_in(snapshot, names)
        self._fetch_missing([k for k in names + late if k not in snapshotted])
        with self._lock:
            newer = {k: self._cache[k] for k in names if k not in snapshotted}
            late_events = {event_key(self._cache[k]): self._cache[k] for k in late}
        late_snapshotted = _keys_in(snapshot, list(late_events))
        newer.update((k, e) for k, e in late_events.items() if k not in late_snapshotted)
        table = _extended(snapshot, newer)
        if self.snapshots and len(newer) >= self.snapshot_after:
            self._write_snapshot(table, started)
        return table

    def _listed_since(self, listed_at: datetime | None) -> tuple[list[str], list[str]]:
        """The event keys and late records to read beside a snapshot whose listing began at ``listed_at`` (every event
        key, without a snapshot)."""
        if listed_at is None:
            return self.store.list_keys(EVENTS_PREFIX), []
        since = listed_at - OVERLAP
        return (self.store.list_keys(EVENTS_PREFIX, start_after=keys.label_event_key(since, "")),
                self.store.list_keys(LATE_PREFIX, start_after=late_key(since, "")))

    def _fetch_missing(self, names: list[str]) -> None:
        """GET the events of ``names`` not read yet, :attr:`read_threads` at a time, into the cache."""
        with self._lock:
            missing = [k for k in names if k not in self._cache]
        if not missing:
            return
        fetched = {k: LabelEvent.from_json(data)
                   for k, data in zip(missing, threaded_map(self.store.get_bytes, missing, self.read_threads))}
        with self._lock:
            self._cache.update(fetched)

    def _snapshot(self, listed: list[str]) -> tuple[pa.Table | None, datetime | None]:
        """The newest readable snapshot of ``listed`` as columns and the time its listing began; Nones without one."""
        found = read_newest(self.store, SNAPSHOTS_PREFIX, self._read_snapshot, "label", listed)
        if found is None:
            return None, None
        key, (table, listed_at) = found
        self._remember(key, table, listed_at)
        return table, listed_at

    def _read_snapshot(self, key: str) -> tuple[pa.Table, datetime]:
        with self._lock:
            if key == self._snapshot_key:  # the one this store last read or wrote: not fetched again
                return self._snapshot_table, self._snapshot_listed_at
        table = pq.read_table(io.BytesIO(self.store.get_bytes(key)))
        listed_at = datetime.fromisoformat(table.schema.metadata[b"skysift.listed_at"].decode())
        return table.select(["key", *EVENT_FIELDS]).cast(SNAPSHOT_SCHEMA), listed_at

    def _write_snapshot(self, table: pa.Table, listed_at: datetime) -> None:
        """Write ``table`` (every event, read from a listing that began at ``listed_at``) as a new snapshot and delete
        the older ones beyond the newest few. Best effort: a failure leaves the events, which stay complete."""
        table = table.replace_schema_metadata({"skysift.listed_at": listed_at.isoformat()})
        key = write_snapshot(self.store, SNAPSHOTS_PREFIX, listed_at, table)
        if key is not None:
            self._remember(key, table, listed_at)

    def _remember(self, key: str, table: pa.Table, listed_at: datetime) -> None:
        """Keep the snapshot last read or written: snapshots never change once written, so it is not read again."""
        with self._lock:
            self._snapshot_key, self._snapshot_table, self._snapshot_listed_at = key, table, listed_at

    def latest(self, candids=None) -> dict[int, LabelEvent]:
        """The current label of each candid (its latest event), optionally only for ``candids``."""
        return latest_events(self.table(), candids)

    def history(self, user=None) -> list[LabelEvent]:
        table = self.table()
        return table_events(table if user is None else table.filter(pc.equal(table.column("user"), user)))

    def import_csv(self, path, user: str | None = None, source: str = "import") -> list[str]:
        """Import a prototype labels.csv (candid, objectId, label, timestamp) or an export's (with user); rows are
        checked before any write. A row's own user, source and event id are kept (an export names who gave each
        label and how), ``user`` and ``source`` are those of the rows without one. Only callers that may name any user import: this writes to the store
        directly, with its credentials (docs/auth.md).

        Event ids are derived from the row, so importing the same file twice adds nothing.
        """
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"candid", "label"} - set(reader.fieldnames or [])
            if missing:
                raise InvalidArgument(f"{path}: missing column(s) {', '.join(sorted(missing))}; expected {', '.join(CSV_COLUMNS)}")
            events, problems = [], []
            for lineno, row in enumerate(reader, start=2):
                try:
                    events.append(validate(_row_event(row, user, source)))
                except (InvalidArgument, ValueError) as exc:
                    problems.append(f"line {lineno}: {exc}")
        if problems:
            shown = "; ".join(problems[:10]) + (f"; ... ({len(problems)} rows in all)" if len(problems) > 10 else "")
            raise InvalidArgument(f"{path}: {shown}")
        return self.submit(events) if events else []

    def export_csv(self, path, every_event: bool = False) -> int:
        """Write the current label of every candid as the prototype's labels.csv plus its user and source, or with
        ``every_event`` every event in the order they count (relabels, undos and every labeller's label: what an
        agreement or an audit needs) with all its fields; return the row count."""
        if every_event:
            events = self.events()
        else:
            latest = self.latest()
            events = [latest[candid] for candid in sorted(latest)]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(EVENT_COLUMNS if every_event else EXPORT_COLUMNS)
            for e in events:
                row = [e.candid, e.object_id, e.label, e.timestamp.isoformat(), e.user, e.source]
                if every_event:
                    row += [e.model_tag, e.experiment, "" if e.round is None else e.round, e.comment, e.event_id]
                writer.writerow(row)
        return len(events)


def _row_event(row: dict, default_user: str | None, default_source: str) -> LabelEvent:
    user = (row.get("user") or "").strip() or default_user
    source = (row.get("source") or "").strip() or default_source
    if not user:
        raise InvalidArgument("no user: the row's user is empty and no user was given for such rows")
    text = (row.get("timestamp") or "").strip()
    ts = None
    if text:
        ts = datetime.fromisoformat(text)
        ts = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    candid = int(str(row["candid"]).strip())
    label = (row.get("label") or "").strip()
    event_id = (row.get("event_id") or "").strip()  # an all-events export's: the event it was
    if not event_id and ts is not None:  # a dated row has a stable identity: re-importing it finds the same key
        basis = f"{candid}|{label}|{ts.isoformat()}|{user}|{source}"
        event_id = hashlib.sha256(basis.encode()).hexdigest()[:32]
    return LabelEvent(candid=candid, label=label, user=user, object_id=(row.get("objectId") or "").strip(),
                      timestamp=ts, source=source, event_id=event_id)


def label_conflicts(events: pa.Table, tag: ModelTag) -> set[int]:
    """Candids whose labellers' latest labels map to different targets under ``tag`` (``events``: in key order)."""
    per_user = events.select(["candid", "label"]).take(_last_rows(events, ["candid", "user"]))  # by candid
    targets = label_targets(per_user.column("label"), tag)
    used = targets.is_valid().to_numpy(zero_copy_only=False)
    candid = per_user.column("candid").to_numpy()[used]
    target = targets.filter(targets.is_valid()).to_numpy()
    if not len(candid):
        return set()
    starts = np.flatnonzero(np.r_[True, candid[1:] != candid[:-1]])  # each candid's run of labellers
    differ = np.minimum.reduceat(target, starts) != np.maximum.reduceat(target, starts)
    return set(candid[starts[differ]].tolist())


def labels_digest(latest: pa.Table) -> str:
    """A digest of the current labels (:func:`latest_of`: by candid): a round whose digest equals the last round's has
    nothing new. The text hashed is "candid:event_id;" per candid, built by Arrow and hashed from its buffer."""
    h = hashlib.sha256()
    if latest.num_rows:
        pairs = pc.binary_join_element_wise(pc.cast(latest.column("candid"), pa.string()), latest.column("event_id"), ":")
        text = pc.binary_join_element_wise(pairs, "", ";").combine_chunks()
        offsets = np.frombuffer(text.buffers()[1], np.int32)[text.offset:text.offset + len(text) + 1]
        h.update(memoryview(text.buffers()[2])[offsets[0]:offsets[-1]])
    return h.hexdigest()
