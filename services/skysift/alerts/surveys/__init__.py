"""The surveys skysift knows, each one module behind the :class:`Survey` protocol, and their registry.

Everything that differs between surveys lives in its module (``ztf.py``, ``lsst.py``): how to recognise a packet,
the survey's extra columns of the alerts table, its cleaner and cutouts, the observing-night rule, its bands,
the broker pages of an object and its cross-match endpoint. The rest of skysift asks the registry (``get``,
``detect``, ``names``) and never branches on a survey's name, so adding a survey is one module registered here
(plus its test data). A survey name skysift does not know fails loudly (:class:`UnknownSurvey`), never falls
through to another survey's rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import polars as pl
import pyarrow as pa

from skysift.alerts.schema import COMMON_FIELDS
from skysift.alerts.surveys import lsst, ztf
from skysift.errors import InvalidArgument


@runtime_checkable
class Survey(Protocol):
    name: str  # the ``survey`` column and the ``survey=`` partition of every key
    fields: list[pa.Field]  # the survey's own columns of the alerts table (null for the other surveys' alerts)
    columns: list[str]  # top-level packet fields the cleaner reads: the decoder projects on them
    cutouts: dict[str, str]  # cutouts-table column -> packet field holding the stamp
    bands: tuple[str, ...]  # the survey's filters, as the ``band`` column names them
    night_shift_hours: float  # added to UTC before taking the date that names an alert's observing night
    lasair_api: str | None  # the Lasair API serving this survey's Sherlock cross-match, None if there is none
    score_name: str  # what the survey calls the real/bogus score kept in the ``drb`` column

    def detect(self, fields: Sequence[str]) -> bool:
        """True when a record with these top-level field names is one of this survey's alerts."""

    def wire_schema(self, wire_id: int) -> tuple[bytes, str] | None:
        """(writer schema JSON, schema version) of a Confluent wire-format schema id; None if the survey never
        uses that format, KeyError saying what it bundles if it does but not this id."""

    def clean(self, df: pl.DataFrame, version: str | None) -> pl.DataFrame:
        """One row per decoded record, in order (``_row``), with the common and the survey's columns."""

    def cut(self, df: pl.DataFrame, alerts: pl.DataFrame) -> pl.DataFrame:
        """The stamps of the decoded records beside candid/objectId/survey of their cleaned rows."""

    def links(self, object_id: str) -> dict[str, str]:
        """Broker pages of an object (name -> URL); none for an object the brokers do not page."""


class UnknownSurvey(InvalidArgument):
    """A survey name no registered module answers to."""


_REGISTRY: dict[str, Survey] = {}


def register(survey: Survey) -> Survey:
    """Add ``survey``; its columns may not redefine a column of another survey with another type."""
    if not isinstance(survey, Survey):
        raise TypeError(f"{survey!r} does not implement the Survey protocol")
    if survey.name in _REGISTRY and _REGISTRY[survey.name] is not survey:
        raise ValueError(f"survey {survey.name!r} is registered already")
    known = {f.name: f for f in alerts_schema()}
    for f in survey.fields:
        if f.name in known and not known[f.name].type.equals(f.type):
            raise ValueError(f"survey {survey.name!r}: column {f.name!r} is {f.type}, already {known[f.name].type}")
    _REGISTRY[survey.name] = survey
    return survey


def unregister(name: str) -> None:
    """Remove a survey (a survey registered for one test, say); unknown names are ignored."""
    _REGISTRY.pop(name, None)


def names() -> list[str]:
    return list(_REGISTRY)


def get(name: str) -> Survey:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownSurvey(f"unknown survey {name!r}; skysift knows {', '.join(_REGISTRY)}") from None


def detect(fields: Sequence[str]) -> Survey:
    """The one survey whose alerts have these top-level fields; :class:`UnknownSurvey` if none or several."""
    found = [s for s in _REGISTRY.values() if s.detect(fields)]
    if len(found) == 1:
        return found[0]
    if found:
        raise UnknownSurvey(f"alert schema matches several surveys: {', '.join(s.name for s in found)}")
    raise UnknownSurvey(f"unrecognised alert schema: not one of {', '.join(_REGISTRY)} "
                        f"(top-level fields {', '.join(list(fields)[:8])}{', ...' if len(fields) > 8 else ''})")


def wire_schema(wire_id: int) -> tuple[bytes, str]:
    """(writer schema, version) of a Confluent wire-format schema id, from the survey that bundles it;
    KeyError saying what each survey bundles otherwise."""
    errors = []
    for survey in _REGISTRY.values():
        try:
            found = survey.wire_schema(wire_id)
        except KeyError as exc:
            errors.append(str(exc.args[0]) if exc.args else str(exc))
            continue
        if found is not None:
            return found
    raise KeyError("; ".join(errors) or f"unknown Confluent schema id {wire_id}: no survey uses that wire format")


def alerts_schema() -> pa.Schema:
    """The alerts table: the common columns, then each registered survey's own columns."""
    fields = {f.name: f for f in COMMON_FIELDS}
    for survey in _REGISTRY.values():
        for f in survey.fields:
            fields.setdefault(f.name, f)
    return _schema(tuple(fields.values()))


_SCHEMAS: dict[tuple[pa.Field, ...], pa.Schema] = {}


def _schema(fields: tuple[pa.Field, ...]) -> pa.Schema:
    if fields not in _SCHEMAS:  # one schema object per set of surveys: equal tables compare fast
        _SCHEMAS[fields] = pa.schema(list(fields), metadata={"skysift.table": "alerts", "skysift.version": "1"})
    return _SCHEMAS[fields]


register(ztf.SURVEY)
register(lsst.SURVEY)
