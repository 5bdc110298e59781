"""The product's stages as the benchmark drives them: fed from memory, each in its own local store."""

from __future__ import annotations

from pathlib import Path

MODEL_TAG = "galactic"  # the model the rounds train and the poll and scoring use


class MemorySource:
    """A topic's messages already in memory, fetched and committed like the Kafka source, without a broker:
    the benchmark measures skysift, not Kafka."""

    def __init__(self, packets):
        self.packets = packets
        self.position = self._next = 0

    def fetch(self, max_alerts: int, timeout_s: float):
        out = self.packets[self.position:self.position + max_alerts]
        self._next = self.position + len(out)
        return out

    def commit(self) -> None:
        self.position = self._next


def store_settings(store_dir: Path, tracking_uri: str = ""):
    """The bench's own store and registry; the model prefix is the default whatever the environment says (the
    bench's sqlite registry is its own, and its champion is looked up under that prefix)."""
    from skysift.config import DEFAULT_MODEL_PREFIX, Settings

    return Settings(store_url=str(store_dir), mlflow_tracking_uri=tracking_uri or "sqlite:///unused.db",
                    mlflow_model_prefix=DEFAULT_MODEL_PREFIX)


def ingest_stage(settings, source: MemorySource | None = None):
    from skysift.ingest.core import IngestStage
    from skysift.ingest.settings import IngestSettings
    from skysift.store import open_store

    class MemoryIngest(IngestStage):
        def open_source(self, replay_path):
            return source if source is not None and not replay_path else super().open_source(replay_path)

    ingest = IngestSettings(source="replay", filter=None, keep_cutouts=False, max_alerts=1000, timeout_s=600)
    return MemoryIngest(settings, open_store(settings=settings), ingest)


def fink_packets(alerts) -> list:
    """Fink's Kafka messages: value = schemaless payload, key = the writer schema."""
    from skysift.alerts.decode import Packet

    return [Packet(p, schema=alerts.schema, format="schemaless", topic="fink_vra_ztf", partition=0, offset=i)
            for i, p in enumerate(alerts.payloads)]


def store_candids(store) -> list[int]:
    out = []
    for key in sorted(store.list_keys("alerts/")):
        if key.endswith("_alerts.parquet"):
            out += store.read_table(key, columns=["candid"]).column("candid").to_pylist()
    return out


def rubin_packets(groups) -> list:
    """Rubin's Kafka messages: Confluent wire format (magic byte, schema id, payload), the schema found by its id."""
    from skysift.alerts.decode import Packet

    packets = [p for g in groups for p in g.packets()]
    return [Packet(p, topic="lsst-alerts", partition=0, offset=i) for i, p in enumerate(packets)]
