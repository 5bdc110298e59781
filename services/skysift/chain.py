"""The stage chain, written once: alerts → enrichment → features, each stage fed what the one before produced.

:func:`through_stages` is the order itself, whatever travels: object-store keys between the stage classes or
services of a poll (:func:`skysift.pipeline.run_poll`), or tables in memory. :func:`features_of_packets` runs it in
memory from raw packets (decode first, nothing written), for inline scoring, offline experiments and the bench.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import pyarrow as pa

from skysift.alerts.decode import DecodeResult, Packet, decode
from skysift.features.sets import FeatureSet, configured

A, E, F = TypeVar("A"), TypeVar("E"), TypeVar("F")
Enrich = Callable[[str, pa.Table], pa.Table]  # (survey, alerts) -> enriched, e.g. skysift.enrichment.core.Enricher


def through_stages(alerts: Iterable[A], enrich: Callable[[A], E], features: Callable[[A, E], F]) -> Iterator[tuple[A, E, F]]:
    """Each alerts item with its enrichment and its features (computed from both), one item at a time."""
    for item in alerts:
        enriched = enrich(item)
        yield item, enriched, features(item, enriched)


@dataclass
class SurveyFeatures:
    survey: str
    alerts: pa.Table
    enriched: pa.Table | None
    features: pa.Table


@dataclass
class ChainResult:
    decoded: DecodeResult
    surveys: list[SurveyFeatures] = field(default_factory=list)  # one per survey with alerts


def features_of_packets(packets: list[Packet], enrich: Enrich | None = None, threads: int = 1,
                        feature_set: FeatureSet | None = None) -> ChainResult:
    """Decode raw packets and compute their features, enriched by ``enrich`` (else without enrichment), as
    ``feature_set`` (default: the configured one, SKYSIFT_FEATURES_VERSION)."""
    compute = (feature_set or configured()).compute
    decoded = decode(packets)
    tables = [(survey, t) for survey, t in decoded.alerts.items() if t.num_rows]
    result = ChainResult(decoded)
    for (survey, alerts), enriched, features in through_stages(
            tables, lambda item: enrich(*item) if enrich else None,
            lambda item, enriched: compute(item[1], enriched, threads=threads)):
        result.surveys.append(SurveyFeatures(survey, alerts, enriched, features))
    return result
