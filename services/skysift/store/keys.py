"""Layout of keys in the store: the one place that knows where each stage's files live.

``alerts/survey=ztf/night=YYYYMMDD/YYYYMMDD_HHMMSS_alerts.parquet`` and the same partitioning and stem for
``cutouts/``, ``enriched/``, ``features/`` and ``predictions/``, so a batch is traceable across stages by stem.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from skysift.errors import InvalidArgument

BATCH_STAGES = ("alerts", "cutouts", "enriched", "features", "predictions")
_BATCH_RE = re.compile(
    r"^(?P<stage>[a-z]+)/survey=(?P<survey>[a-z0-9_]+)/night=(?P<night>\d{8})/(?P<stem>\d{8}_\d{6}(?:_[0-9a-f]+)?)_(?P=stage)\.parquet$"
)


@dataclass(frozen=True)
class BatchKey:
    stage: str
    survey: str
    night: str
    stem: str

    def __str__(self) -> str:
        return f"{self.stage}/survey={self.survey}/night={self.night}/{self.stem}_{self.stage}.parquet"

    def sibling(self, stage: str) -> "BatchKey":
        """The same batch in another stage (alerts → features, ...)."""
        if stage not in BATCH_STAGES:
            raise InvalidArgument(f"unknown stage {stage!r}")
        return BatchKey(stage, self.survey, self.night, self.stem)


def new_batch(stage: str, survey: str, when: datetime | None = None) -> BatchKey:
    when = (when or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return BatchKey(stage, survey, when.strftime("%Y%m%d"), when.strftime("%Y%m%d_%H%M%S"))


def parse_batch(key: str, stage: str | None = None) -> BatchKey:
    """Parse a batch key, with a message that shows the expected shape when it is not one."""
    example = f"'{stage or 'alerts'}/survey=ztf/night=20250101/20250101_120000_{stage or 'alerts'}.parquet'"
    if not key:
        raise InvalidArgument(f"the {stage or 'batch'} key is required, e.g. {example}")
    m = _BATCH_RE.match(key)
    if not m:
        raise InvalidArgument(f"not a batch key: {key!r}; expected e.g. {example}")
    batch = BatchKey(m["stage"], m["survey"], m["night"], m["stem"])
    if stage and batch.stage != stage:
        raise InvalidArgument(f"expected a key under {stage}/, got one under {batch.stage}/: {key!r}")
    return batch


def dlq_key(stage: str, when: datetime | None = None) -> str:
    when = (when or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return f"dlq/{stage}/night={when:%Y%m%d}/{when:%Y%m%d_%H%M%S}_{uuid.uuid4().hex[:8]}.parquet"


def label_event_key(when: datetime, event_id: str) -> str:
    return f"labels/events/{when.astimezone(timezone.utc):%Y%m%dT%H%M%S%fZ}_{event_id}.json"


def round_prefix(experiment: str, round_number: int) -> str:
    return f"rounds/{experiment}/round={round_number:03d}/"


def dataset_prefix(dataset_id: str) -> str:
    return f"datasets/{dataset_id}/"


@dataclass(frozen=True)
class Batch:
    """A batch a stage wrote: its key, survey and row count (what stages pass to each other)."""

    key: str
    survey: str
    rows: int
