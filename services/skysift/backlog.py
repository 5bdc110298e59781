"""What earlier polls left behind: alerts batches whose enriched, features or predictions file is missing, or whose
predictions lack the current champion of a model tag.

Why: a poll can stop after ingest has committed its offsets (the store gone between stages, a stage down, no model
yet), and no later poll would touch that batch again: its alerts are not in the Kafka topic any more. Stages are
therefore level-triggered: every poll finds what is behind from the store's own listing and runs what each batch
lacks, oldest first, a bounded number per poll, within a window of recent polls (batches are dated by their stem,
the time of the poll that wrote them, so a backfill of old nights is caught up as well). Batches younger than a
grace period are left to the poll that is writing them.

When a champion moves, the batches already scored are behind too, until the new version has scored them: each
predictions write leaves a marker per model version that scored the batch (``state/scored/<model>/<version>/
survey=<s>/night=<n>/<stem>``), and a batch with features but no marker of a current champion is re-scored (its
predictions file keeps every version's rows, :func:`skysift.inference.sinks.parquet.write_predictions`). A batch
a champion cannot score (features of another feature-set version) gets a "cannot score" marker of that version
instead (``state/unscorable/<model>/<version>/...``): it is not retried until the champion changes (each retry took
a catch-up slot, every poll, until the batch left the window). Batches missing a file come first, then those to
re-score, each oldest first. The markers are listed per champion and survey from the oldest night of the window's
batches only (a listing that grew with every night ever scored), and a poll deletes the listed markers of batches
that left the window: level-triggered, it lists :data:`PRUNE_MARGIN` of nights before the window, so polls at least
that often leave no marker of a live champion behind (a former champion's markers are no longer listed, and stay).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from skysift.errors import InvalidArgument
from skysift.store.keys import BatchKey, parse_batch

LATER_STAGES = ("enriched", "features", "predictions")  # what an alerts batch needs, in order
SCORED_PREFIX = "state/scored/"
UNSCORABLE_PREFIX = "state/unscorable/"
Champion = tuple[str, str]  # (registered model name, version)
PRUNE_MARGIN = timedelta(days=3)  # nights before the window whose markers a poll lists, to delete them


@dataclass(frozen=True)
class Behind:
    """An alerts batch and the stages it lacks (a subset of :data:`LATER_STAGES`, in order)."""

    alerts_key: str
    survey: str
    missing: tuple[str, ...]
    rescore: bool = False  # every stage is there, but a current champion has not scored it


@dataclass(frozen=True)
class Backlog:
    behind_all: list[Behind]  # every batch behind in the window, oldest first
    limit: int

    @property
    def behind(self) -> list[Behind]:
        """The oldest ``limit``: what one poll takes on."""
        return self.behind_all[: self.limit]

    @property
    def total(self) -> int:
        return len(self.behind_all)


def stem_time(batch: BatchKey) -> datetime:
    return _time_of(batch.stem)


def _time_of(stem: str) -> datetime:
    return datetime.strptime(stem[:15], "%Y%m%d_%H%M%S").replace(tzinfo=timezone.utc)


def parse_keys(keys: Iterable[str]) -> list[BatchKey]:
    """The batch keys among ``keys`` (temporary and foreign objects are skipped)."""
    out = []
    for key in keys:
        try:
            out.append(parse_batch(key))
        except InvalidArgument:
            continue
    return out


def scored_prefix(champion: Champion, root: str = SCORED_PREFIX) -> str:
    name, version = champion
    return f"{root}{quote(name, safe='')}/{quote(version, safe='')}/"


def scored_key(champion: Champion, batch: BatchKey, root: str = SCORED_PREFIX) -> str:
    """The marker saying ``champion`` scored ``batch`` (under ``root`` UNSCORABLE_PREFIX: cannot score it); only
    its key is ever listed."""
    return f"{scored_prefix(champion, root)}survey={batch.survey}/night={batch.night}/{batch.stem}"


def mark_scored(store, batch: BatchKey, champions: Iterable[Champion]) -> None:
    for champion in champions:
        store.put_bytes(scored_key(champion, batch), b"")


def mark_unscorable(store, batch: BatchKey, champion: Champion, reason: str) -> None:
    """``champion`` cannot score ``batch``: the backlog leaves the batch to it as if scored (the reason is kept for
    whoever looks)."""
    store.put_bytes(scored_key(champion, batch, UNSCORABLE_PREFIX), reason.encode())


def _first_nights(alerts_keys: Iterable[str], now: datetime, window: timedelta) -> dict[str, str]:
    """Per survey of ``alerts_keys``, the night its markers are listed from: the oldest night of a batch written within
    ``window`` (a backfill's old nights included), or the night :data:`PRUNE_MARGIN` before the window if older."""
    floor = f"{now - window - PRUNE_MARGIN:%Y%m%d}"
    first: dict[str, str] = {}
    for batch in parse_keys(alerts_keys):
        night = batch.night if now - window <= stem_time(batch) else floor
        first[batch.survey] = min(first.get(batch.survey, floor), night)
    return first


def list_scored(store, champions: Iterable[Champion], alerts_keys: Iterable[str], now: datetime, window: timedelta,
                prune: bool = False) -> dict[Champion, set[tuple[str, str, str]]]:
    """(survey, night, stem) of the batches written within ``window`` before ``now`` that each champion scored or
    cannot score (neither is re-scored by it): per champion, marker kind and survey of ``alerts_keys``, one listing
    from its first night (:func:`_first_nights`). With ``prune``, the listed markers of batches written before the
    window are deleted."""
    first = _first_nights(alerts_keys, now, window)
    out = {}
    for champion in champions:
        idents = set()
        for root in (SCORED_PREFIX, UNSCORABLE_PREFIX):
            prefix = scored_prefix(champion, root)
            for survey, night in sorted(first.items()):
                # after "night=<the number before>~", not "night=<night>": SeaweedFS skips the directory StartAfter names
                after = f"{prefix}survey={survey}/night={int(night) - 1:08d}~"
                for key in store.list_keys(f"{prefix}survey={survey}/", start_after=after):
                    _, night_part, stem = key.removeprefix(prefix).split("/", 2)
                    if _time_of(stem) >= now - window:
                        idents.add((survey, night_part.removeprefix("night="), stem))
                    elif prune:
                        store.delete(key)
        out[champion] = idents
    return out


def find_behind(listing: dict[str, Iterable[str]], now: datetime, window: timedelta, grace: timedelta,
                limit: int, exclude: Iterable[str] = (),
                scored: dict[Champion, set[tuple[str, str, str]]] | None = None) -> Backlog:
    """Batches of ``listing["alerts"]`` written within ``window`` before ``now`` (and at least ``grace`` ago) that
    lack a sibling in ``listing[stage]`` for a later stage, then those with predictions that a champion of
    ``scored`` (its :func:`list_scored`) has not scored; ``exclude`` holds alerts keys handled elsewhere."""
    present = {stage: {(b.survey, b.night, b.stem) for b in parse_keys(listing.get(stage, ()))}
               for stage in LATER_STAGES}
    skip = set(exclude)
    behind, rescore = [], []
    for batch in sorted(parse_keys(listing.get("alerts", ())), key=lambda b: (b.stem, b.survey, b.night)):
        if str(batch) in skip or not (now - window <= stem_time(batch) <= now - grace):
            continue
        ident = (batch.survey, batch.night, batch.stem)
        missing = tuple(stage for stage in LATER_STAGES if ident not in present[stage])
        if missing:
            # a stage's output is rebuilt from its input: once one is missing, every later one is redone
            first = LATER_STAGES.index(missing[0])
            behind.append(Behind(str(batch), batch.survey, LATER_STAGES[first:]))
        elif any(ident not in idents for idents in (scored or {}).values()):
            rescore.append(Behind(str(batch), batch.survey, ("predictions",), rescore=True))
    return Backlog(behind + rescore, limit)


@dataclass(frozen=True)
class NightStatus:
    """Batches of one survey and observing night at each stage, and how many alerts batches are behind."""

    survey: str
    night: str
    batches: dict[str, int]  # stage -> batch files
    behind: int  # alerts batches lacking a later stage
    rescore: int = 0  # alerts batches with every stage, but not yet scored by a current champion


def night_status(listing: dict[str, Iterable[str]], now: datetime, window: timedelta,
                 scored: dict[Champion, set[tuple[str, str, str]]] | None = None) -> list[NightStatus]:
    """Per survey and night, the batches written within ``window`` at every stage (what `skysift status` shows),
    and, given the current champions' ``scored`` (:func:`list_scored`), those waiting to be re-scored."""
    parsed = {stage: [b for b in parse_keys(listing.get(stage, ())) if now - window <= stem_time(b)]
              for stage in ("alerts", *LATER_STAGES)}
    backlog = [(x.rescore, parse_batch(x.alerts_key))
               for x in find_behind(listing, now, window, timedelta(0), 0, scored=scored).behind_all]
    behind = Counter((b.survey, b.night) for rescore, b in backlog if not rescore)
    rescore = Counter((b.survey, b.night) for rescore, b in backlog if rescore)
    counts: dict[tuple[str, str], Counter] = {}
    for stage, batches in parsed.items():
        for b in batches:
            counts.setdefault((b.survey, b.night), Counter())[stage] += 1
    return [NightStatus(survey, night, {s: counts[(survey, night)][s] for s in parsed}, behind[(survey, night)],
                        rescore[(survey, night)]) for survey, night in sorted(counts)]


def list_stages(store) -> dict[str, list[str]]:
    """The store's batch keys per stage (one listing per stage prefix)."""
    return {stage: store.list_keys(f"{stage}/") for stage in ("alerts", *LATER_STAGES)}
