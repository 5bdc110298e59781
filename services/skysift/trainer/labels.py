"""Labels as append-only events in the object store: one JSON object per event, never rewritten.

Why events and not a labels.csv: two labellers (or a labeller and an import) writing at the same time must
not lose each other's work, and a relabelled alert keeps its history. Each event gets its own key
(``labels/events/<utc>_<event_id>.json``, written with put-if-absent), so concurrent writers never touch the
same object. The current label of a candid is its latest event (keys sort by time, then event id).
Events are immutable, so a :class:`LabelStore` caches every event it has read and only fetches new keys.
"""

from __future__ import annotations

import csv
import hashlib
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from skysift.errors import InvalidArgument
from skysift.modeltags import LABELS, MODEL_TAGS, ModelTag
from skysift.store import keys

EVENTS_PREFIX = "labels/events/"
SOURCES = ("human", "import", "oracle")
CSV_COLUMNS = ("candid", "objectId", "label", "timestamp")  # the prototype's labels.csv
FUTURE_TOLERANCE = timedelta(minutes=5)  # clock skew allowed between a labeller's machine and the server


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
    if event.label not in LABELS:
        raise InvalidArgument(f"unknown label {event.label!r} for candid {event.candid}; expected one of {', '.join(LABELS)}")
    if not (event.user or "").strip():
        raise InvalidArgument(f"label for candid {event.candid} has no user")
    if event.source not in SOURCES:
        raise InvalidArgument(f"unknown label source {event.source!r}; expected one of {', '.join(SOURCES)}")
    if event.model_tag and event.model_tag not in MODEL_TAGS:
        raise InvalidArgument(f"unknown model tag {event.model_tag!r}; expected one of {', '.join(MODEL_TAGS)}")
    ts = event.timestamp or datetime.now(UTC)
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    if ts - datetime.now(UTC) > FUTURE_TOLERANCE:  # a future event would stay "latest" and hide every later label
        raise InvalidArgument(f"label for candid {event.candid} is dated in the future ({ts.isoformat()})")
    return replace(event, user=event.user.strip(), timestamp=ts.astimezone(UTC),
                   event_id=event.event_id or uuid.uuid4().hex)


def event_key(event: LabelEvent) -> str:
    return keys.label_event_key(event.timestamp, event.event_id)


class LabelStore:
    """Submit and read label events; safe to share between threads and between processes."""

    def __init__(self, store, read_threads: int = 16):
        self.store = store
        self.read_threads = read_threads
        self._cache: dict[str, LabelEvent] = {}
        self._lock = threading.Lock()

    def submit(self, events: list[LabelEvent]) -> list[str]:
        """Validate every event first (all or nothing), then write each to its own key; return the event ids.

        An event whose key already exists (the same import run twice) is not written again.
        """
        if not events:
            raise InvalidArgument("no label events to submit")
        checked = [validate(e) for e in events]
        for event in checked:
            self.store.put_if_absent(event_key(event), event.to_json())
        return [e.event_id for e in checked]

    def events(self) -> list[LabelEvent]:
        """Every event, oldest first (key order: UTC time, then event id)."""
        names = self.store.list_keys(EVENTS_PREFIX)
        with self._lock:
            missing = [k for k in names if k not in self._cache]
        if missing:
            with ThreadPoolExecutor(max_workers=min(self.read_threads, len(missing))) as pool:
                fetched = list(pool.map(self.store.get_bytes, missing))
            with self._lock:
                for k, data in zip(missing, fetched):
                    self._cache[k] = LabelEvent.from_json(data)
        with self._lock:
            return [self._cache[k] for k in names]

    def latest(self, candids=None) -> dict[int, LabelEvent]:
        """The current label of each candid (its latest event), optionally only for ``candids``."""
        wanted = None if candids is None else {int(c) for c in candids}
        out: dict[int, LabelEvent] = {}
        for event in self.events():
            if wanted is None or event.candid in wanted:
                out[event.candid] = event
        return out

    def history(self, user=None) -> list[LabelEvent]:
        return [e for e in self.events() if user is None or e.user == user]

    def import_csv(self, path, user: str, source: str = "import") -> list[str]:
        """Import a prototype labels.csv (candid, objectId, label, timestamp); rows are checked before any write.

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

    def export_csv(self, path) -> int:
        """Write the current label of every candid as the prototype's labels.csv; return the row count."""
        latest = self.latest()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(CSV_COLUMNS)
            for candid in sorted(latest):
                e = latest[candid]
                writer.writerow([candid, e.object_id, e.label, e.timestamp.isoformat()])
        return len(latest)


def _row_event(row: dict, user: str, source: str) -> LabelEvent:
    text = (row.get("timestamp") or "").strip()
    ts = None
    if text:
        ts = datetime.fromisoformat(text)
        ts = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    candid = int(str(row["candid"]).strip())
    label = (row.get("label") or "").strip()
    event_id = ""
    if ts is not None:  # a dated row has a stable identity: re-importing it finds the same key
        basis = f"{candid}|{label}|{ts.isoformat()}|{user}|{source}"
        event_id = hashlib.sha256(basis.encode()).hexdigest()[:32]
    return LabelEvent(candid=candid, label=label, user=user, object_id=(row.get("objectId") or "").strip(),
                      timestamp=ts, source=source, event_id=event_id)


def label_conflicts(history: list[LabelEvent], tag: ModelTag) -> set[int]:
    """Candids whose labellers' latest labels map to different targets under ``tag``."""
    per_user: dict[tuple[int, str], int | None] = {}
    for e in history:
        per_user[(e.candid, e.user)] = tag.target(e.label)
    seen: dict[int, set] = {}
    for (candid, _), target in per_user.items():
        if target is not None:
            seen.setdefault(candid, set()).add(target)
    return {c for c, t in seen.items() if len(t) > 1}


def labels_digest(latest: dict[int, LabelEvent]) -> str:
    """A digest of the current labels: a round whose digest equals the last round's has nothing new."""
    h = hashlib.sha256()
    for candid in sorted(latest):
        h.update(f"{candid}:{latest[candid].event_id};".encode())
    return h.hexdigest()
