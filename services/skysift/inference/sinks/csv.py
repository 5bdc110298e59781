"""A rolling CSV of every classification, as oracle-support keeps: one row per alert and model.

Rotation by UTC day writes ``<stem>_YYYYMMDD.csv``; by size, the active file ``<stem>.csv`` is renamed to
``<stem>_<UTC time>.csv`` once it passes ``max_mb``. The columns are fixed whatever the model (a wide file would
change header with each taxonomy): ids, model, the top class and its probability, and every class probability
as a JSON object in pre-order. The file is local to the replica that writes it, like oracle-support's.
"""

from __future__ import annotations

import csv
import json
import threading
from datetime import UTC, datetime
from pathlib import Path

from skysift.inference.settings import CsvSettings
from skysift.inference.sinks.base import Scored, class_probabilities

HEADER = ["scored_at", "candid", "objectId", "model_tag", "model_name", "model_version", "feature_set_version",
          "top_class", "top_probability", "probabilities"]


class CsvSink:
    name = "csv"

    def __init__(self, settings: CsvSettings):
        self.settings = settings
        self.base = Path(settings.path)
        self._lock = threading.Lock()

    def path_for(self, now: datetime) -> Path:
        if self.settings.rotation == "day":
            return self.base.with_name(f"{self.base.stem}_{now:%Y%m%d}{self.base.suffix or '.csv'}")
        return self.base

    def send(self, scored: Scored) -> str:
        now = datetime.now(UTC)
        stamp = now.isoformat(timespec="seconds")
        lines = []
        for row, tag, walk in class_probabilities(scored.predictions, scored.models):
            leaves = set(scored.models[tag].taxonomy.leaves)
            top = max((w for w in walk if w[0] in leaves), key=lambda w: w[2])
            lines.append([stamp, row["candid"], row["objectId"], tag, row["model_name"], row["model_version"],
                          row["feature_set_version"], top[0], f"{top[2]:.6f}",
                          json.dumps({label: round(float(p), 6) for label, _, p in walk})])
        with self._lock:
            path = self.path_for(now)
            self._rotate_by_size(path, now)
            path.parent.mkdir(parents=True, exist_ok=True)
            new = not path.exists() or path.stat().st_size == 0
            with open(path, "a", newline="") as fh:
                writer = csv.writer(fh)
                if new:
                    writer.writerow(HEADER)
                writer.writerows(lines)
        return f"{len(lines)} rows appended to {path}"

    def _rotate_by_size(self, path: Path, now: datetime) -> None:
        if self.settings.rotation != "size" or not path.exists():
            return
        if path.stat().st_size < self.settings.max_mb * 1024 * 1024:
            return
        target = path.with_name(f"{path.stem}_{now:%Y%m%dT%H%M%S%f}{path.suffix or '.csv'}")
        path.rename(target)
