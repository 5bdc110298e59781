"""What every sink shares: what it receives (:class:`Scored`), its protocol, its report, running them side by side,
and the rows they format from."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

from skysift.inference.registry import LoadedModel
from skysift.store.keys import Batch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scored:
    """What a sink receives: the predictions table, the models that made it, and the parquet it was written to."""

    predictions: pa.Table
    models: dict[str, LoadedModel]
    batch: Batch | None


@dataclass(frozen=True)
class SinkReport:
    name: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"{self.name}: {'ok' if self.ok else 'FAILED'}: {self.detail}"


class Sink(Protocol):
    name: str

    def send(self, scored: Scored) -> str:
        """Deliver ``scored``; return a one-line summary, or raise when it could not be delivered."""


def run_sinks(sinks: list[Sink], scored: Scored) -> list[SinkReport]:
    """Run every sink in parallel; each failure becomes a report (and a log line), not an exception."""
    if not sinks:
        return []

    def one(sink: Sink) -> SinkReport:
        try:
            return SinkReport(sink.name, True, sink.send(scored))
        except Exception as exc:  # noqa: BLE001 - a sink's failure is reported, never propagated
            log.warning("sink failed", extra={"sink": sink.name, "error": str(exc),
                                              "batch": scored.batch.key if scored.batch else None})
            return SinkReport(sink.name, False, str(exc) or type(exc).__name__)

    with ThreadPoolExecutor(max_workers=len(sinks), thread_name_prefix="skysift-sink") as pool:
        return list(pool.map(one, sinks))


def class_probabilities(predictions: pa.Table,
                        models: dict[str, LoadedModel]) -> list[tuple[dict, str, list[tuple[str, str, float]]]]:
    """Rows as (row dict of the id columns, model tag, [(label, parent, probability) in pre-order]).

    The shared view every sink formats from, so the pre-order walk is computed in one place.
    """
    ids = {c: predictions.column(c).to_pylist() for c in
           ("candid", "objectId", "model_tag", "model_name", "model_version", "feature_set_version")}
    probs = {c: predictions.column(c).to_pylist() for c in predictions.column_names if c.startswith("prob_")}
    out = []
    for i, tag in enumerate(ids["model_tag"]):
        nodes = models[tag].taxonomy.nodes
        row = {c: v[i] for c, v in ids.items()}
        out.append((row, tag, [(n.label, n.parent, probs[n.column][i]) for n in nodes]))
    return out
