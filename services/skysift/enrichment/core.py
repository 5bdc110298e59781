"""Context for every alert of a batch: Sherlock host match, Galactic extinction, offline catalogue matches
(nearest galaxy, known variable star: :mod:`skysift.enrichment.catalogs`), and the broker's own values.

One row per alert, indexed by candid (ENRICHED_SCHEMA). Surveys are treated alike: Sherlock is asked by position
(or objectId, see settings) for ZTF and Rubin, E(B-V) comes from the alert's position. Fink's values are carried
when the stream has them; where a survey has no such field the column is null, never filled in.
``cdsxmatch`` is Fink's SIMBAD type: ``cdsxmatch`` on ZTF, ``xm.simbad_otype`` (``xm_simbad_otype``) on Rubin.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from skysift import config
from skysift.alerts.batches import read_alerts
from skysift.enrichment import lasair
from skysift.enrichment.catalogs import (
    CONTEXT_FIELDS,
    HOST_RADIUS_ARCSEC,
    VARSTAR_RADIUS_ARCSEC,
    OfflineCatalogs,
    load_catalogs,
    not_searched,
)
from skysift.enrichment.extinction import ExtinctionMap, load_extinction_map
from skysift.enrichment.lasair import SherlockClient, SherlockMatch
from skysift.enrichment.settings import EnrichmentSettings
from skysift.errors import InvalidArgument
from skysift.store import keys
from skysift.store.keys import Batch

log = logging.getLogger(__name__)

ENRICHED_SCHEMA = pa.schema(
    [
        pa.field("candid", pa.int64(), nullable=False),
        pa.field("objectId", pa.string(), nullable=False),
        pa.field("survey", pa.string(), nullable=False),
        # Sherlock (Lasair): class (SN, NT, AGN, CV, VS, BS, ORPHAN, UNCLEAR), best crossmatch and its distance
        pa.field("sherlock_classification", pa.string()),
        pa.field("sherlock_separation_arcsec", pa.float64()),
        pa.field("sherlock_catalogue", pa.string()),
        pa.field("sherlock_catalogue_object_id", pa.string()),
        pa.field("sherlock_status", pa.string(), nullable=False),  # see skysift.enrichment.lasair
        # SFD98 E(B-V) and the map it came from (see skysift.enrichment.extinction)
        pa.field("ebv", pa.float64()),
        pa.field("ebv_map", pa.string()),
        # the broker's own added values, carried as received
        pa.field("cdsxmatch", pa.string()),
        pa.field("roid", pa.int32()),
        pa.field("tns", pa.string()),
        pa.field("finkclass", pa.string()),
        *CONTEXT_FIELDS,  # offline cross-match (host galaxy, variable star), added in version 2
    ],
    metadata={"skysift.table": "enriched", "skysift.version": "2"},
)

REQUIRED_ALERT_COLUMNS = ("candid", "objectId", "survey", "ra", "dec")
CARRIED_COLUMNS = ("cdsxmatch", "xm_simbad_otype", "roid", "tns", "finkclass")


def _column(table: pa.Table, name: str, type_: pa.DataType) -> pa.Array:
    if name not in table.column_names:
        return pa.nulls(table.num_rows, type_)
    return table.column(name).combine_chunks().cast(type_)


def _sherlock_columns(alerts: pa.Table, sherlock: SherlockClient | None) -> dict[str, pa.Array]:
    """Ask once per objectId (at its first alert's position) and spread the answers over the rows."""
    n = alerts.num_rows
    object_ids = alerts.column("objectId").combine_chunks()
    if sherlock is None:
        return {"sherlock_status": pa.array([lasair.NOT_CONFIGURED] * n, pa.string())}
    unique = pc.unique(object_ids)
    first = pc.index_in(unique, value_set=object_ids).to_numpy()  # first row of each objectId
    ra = alerts.column("ra").combine_chunks().to_numpy(zero_copy_only=False)[first]
    dec = alerts.column("dec").combine_chunks().to_numpy(zero_copy_only=False)[first]
    ids = unique.to_pylist()
    matches = sherlock.lookup([(o, float(r), float(d)) for o, r, d in zip(ids, ra, dec)])
    per_object: list[SherlockMatch] = [matches[o] for o in ids]
    row_to_object = pc.index_in(object_ids, value_set=unique)
    fields = {
        "sherlock_classification": ("classification", pa.string()),
        "sherlock_separation_arcsec": ("separation_arcsec", pa.float64()),
        "sherlock_catalogue": ("catalogue", pa.string()),
        "sherlock_catalogue_object_id": ("catalogue_object_id", pa.string()),
        "sherlock_status": ("status", pa.string()),
    }
    return {column: pa.array([getattr(m, attr) for m in per_object], type_).take(row_to_object)
            for column, (attr, type_) in fields.items()}


def enrich(alerts: pa.Table, sherlock: SherlockClient | None, ebv: ExtinctionMap,
           catalogs: OfflineCatalogs | None = None, *, host_radius_arcsec: float = HOST_RADIUS_ARCSEC,
           varstar_radius_arcsec: float = VARSTAR_RADIUS_ARCSEC) -> pa.Table:
    """The enrichment of ``alerts`` (ALERTS_SCHEMA columns; at least candid, objectId, survey, ra, dec), one row
    per alert in the same order, as ENRICHED_SCHEMA. ``sherlock=None``: Sherlock columns null, ``not_configured``;
    ``catalogs=None``: the offline context columns are null (not searched)."""
    missing = [c for c in REQUIRED_ALERT_COLUMNS if c not in alerts.column_names]
    if missing:
        raise InvalidArgument(f"alerts table lacks column(s) {', '.join(missing)}: is it an alerts/ batch?")
    n = alerts.num_rows
    ra = _column(alerts, "ra", pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
    dec = _column(alerts, "dec", pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
    ebv_values = ebv.ebv(ra, dec)
    has_ebv = np.isfinite(ebv_values)
    offline = (catalogs.match(ra, dec, host_radius_arcsec, varstar_radius_arcsec) if catalogs is not None
               else not_searched(n))
    columns = {
        "candid": _column(alerts, "candid", pa.int64()),
        "objectId": _column(alerts, "objectId", pa.string()),
        "survey": _column(alerts, "survey", pa.string()),
        **_sherlock_columns(alerts, sherlock),
        "ebv": pa.array(ebv_values, pa.float64(), mask=~has_ebv),
        "ebv_map": pa.array(np.where(has_ebv, ebv.name, None), pa.string()),
        "cdsxmatch": pc.coalesce(_column(alerts, "cdsxmatch", pa.string()), _column(alerts, "xm_simbad_otype", pa.string())),
        "roid": _column(alerts, "roid", pa.int32()),
        "tns": _column(alerts, "tns", pa.string()),
        "finkclass": _column(alerts, "finkclass", pa.string()),
        **offline,
    }
    arrays = [columns[f.name] if f.name in columns else pa.nulls(n, f.type) for f in ENRICHED_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=ENRICHED_SCHEMA)


@dataclass(frozen=True)
class EnrichResult:
    enriched: Batch
    status_counts: dict[str, int]  # rows per Sherlock status


class Enricher:
    """Enrich in-memory alerts tables: Sherlock through its cache in the store, E(B-V) from the dust map (loaded
    on first use: building an Enricher costs nothing, so a stage that only sometimes enriches can hold one)."""

    def __init__(self, store, enrichment_settings: EnrichmentSettings | None = None):
        self.store = store
        self._given_settings = enrichment_settings

    @cached_property
    def enrichment_settings(self) -> EnrichmentSettings:
        return self._given_settings or config.load(EnrichmentSettings)

    @cached_property
    def extinction(self) -> ExtinctionMap:
        return load_extinction_map(self.enrichment_settings.dustmaps_dir)

    @cached_property
    def catalogs(self) -> OfflineCatalogs | None:
        """The offline catalogues with their sky indices (read once per process, see enrichment.catalogs)."""
        s = self.enrichment_settings
        return load_catalogs(s.catalogs_dir) if s.offline_catalogs else None

    def sherlock_for(self, survey: str) -> SherlockClient | None:
        """A Sherlock client for ``survey``'s Lasair, or None without a token (or a Lasair for the survey)."""
        s = self.enrichment_settings
        url = s.lasair_url(survey)
        if not s.sherlock_configured or url is None:
            return None
        client = lasair.LasairClient(url, s.lasair_token, s.timeout_seconds)
        cache = lasair.SherlockCache(self.store, survey, s.cache_prefix, s.cache_read_threads)
        return SherlockClient(client, cache, s)

    def __call__(self, survey: str, alerts: pa.Table) -> pa.Table:
        s = self.enrichment_settings
        return enrich(alerts, self.sherlock_for(survey), self.extinction, self.catalogs,
                      host_radius_arcsec=s.host_radius_arcsec, varstar_radius_arcsec=s.varstar_radius_arcsec)


class EnrichmentStage:
    """Read an alerts batch, write its enrichment next to it under ``enriched/``."""

    def __init__(self, settings, store, enrichment_settings: EnrichmentSettings | None = None):
        self.settings = settings
        self.store = store
        self.enricher = Enricher(store, enrichment_settings)
        # a service loads its dust map and catalogues at start, not on the first call
        self.enricher.extinction  # noqa: B018
        self.enricher.catalogs  # noqa: B018

    def process(self, alerts_key: str) -> EnrichResult:
        batch = keys.parse_batch(alerts_key, stage="alerts")
        alerts = read_alerts(self.store, alerts_key, REQUIRED_ALERT_COLUMNS, CARRIED_COLUMNS)
        table = self.enricher(batch.survey, alerts)
        key = str(batch.sibling("enriched"))
        self.store.write_table(key, table)
        counts = {v["values"]: v["counts"] for v in pc.value_counts(table.column("sherlock_status")).to_pylist()}
        log.info("enrichment written", extra={"key": key, "rows": table.num_rows, "sherlock": counts,
                                              "ebv_map": self.enricher.extinction.name,
                                              "hosts": table.num_rows - table.column("host_name").null_count,
                                              "variable_stars": table.num_rows - table.column("varstar_type").null_count})
        return EnrichResult(Batch(key, batch.survey, table.num_rows), counts)
