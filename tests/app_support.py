"""Real alert batches in a store, as ingest writes them, for the app's tests (decoded from tests/data packets)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa

from skysift.alerts.decode import decode_packets
from skysift.store import keys

ALERTS = Path(__file__).parent / "data" / "alerts"
# Fink's distribution files: recent ZTF alerts (drb, histories in g and r) with all three stamps.
ZTF_AVRO = sorted((ALERTS / "ztf" / "avro" / "fink-broker_distribute").glob("*.avro"))
# Fink-distributed ZTF alerts with SIMBAD cross-matches: the oracle labels them galactic / extragalactic.
FINK_LABELED = sorted((ALERTS / "ztf" / "fink_labeled" / "avro").rglob("*.avro"))
RUBIN_PARQUET = sorted((ALERTS / "lsst" / "real" / "fink-tutorials_ftransfer_2026-03-27").glob("*.parquet"))


def ztf_packets(n: int) -> list[bytes]:
    return [p.read_bytes() for p in ZTF_AVRO[:n]]


def fink_labeled_packets() -> list[bytes]:
    return [p.read_bytes() for p in FINK_LABELED]


def rubin_packets(n_files: int = 1) -> list[bytes]:
    return [p.read_bytes() for p in RUBIN_PARQUET[:n_files]]


def write_batch(store, packets: list[bytes], when: datetime | None = None, cutouts: bool = True) -> tuple[str, pa.Table]:
    """Decode ``packets`` (one survey) and write the alerts (and cutouts) batch; return the alerts key and table."""
    result = decode_packets(packets, keep_cutouts=cutouts)
    assert not result.dead_letters, result.dead_letters[:1]
    (survey, table), = result.alerts.items()
    batch = keys.new_batch("alerts", survey, when or datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc))
    store.write_table(str(batch), table)
    if cutouts:
        store.write_table(str(batch.sibling("cutouts")), result.cutouts[survey])
    return str(batch), table
