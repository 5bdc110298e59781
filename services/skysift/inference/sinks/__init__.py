"""Where predictions go besides ``predictions/`` parquet: a rolling CSV, SkyPortal annotations, Slack.

Each sink is optional and configured (see :mod:`skysift.inference.settings`). The parquet is written first and
is the record; the other sinks then run side by side, each in its own thread, so a slow or failing one (SkyPortal
down) never blocks the others. HTTP calls are retried with backoff (:mod:`.http`); whatever still fails is
reported in a :class:`SinkReport`, never raised to the caller.
"""

from __future__ import annotations

from skysift.inference.sinks.base import Scored, Sink, SinkReport, class_probabilities, run_sinks
from skysift.inference.sinks.csv import CsvSink
from skysift.inference.sinks.skyportal import SkyPortalSink
from skysift.inference.sinks.slack import SlackSink

__all__ = ["Scored", "Sink", "SinkReport", "build_sinks", "class_probabilities", "run_sinks"]


def build_sinks(settings) -> list[Sink]:
    """The external sinks switched on in ``settings`` (an :class:`~skysift.inference.settings.InferenceSettings`)."""
    sinks: list[Sink] = []
    if settings.csv.enabled:
        sinks.append(CsvSink(settings.csv))
    if settings.skyportal.enabled:
        sinks.append(SkyPortalSink(settings.skyportal, settings.sink_attempts, settings.sink_backoff_seconds))
    if settings.slack.enabled:
        sinks.append(SlackSink(settings.slack, settings.sink_attempts, settings.sink_backoff_seconds))
    return sinks
