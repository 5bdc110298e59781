"""Ingest settings (``SKYSIFT_INGEST_*``) and the Kafka consumer's (``SKYSIFT_KAFKA_*``), as Fink and BOOM users
configure them: bootstrap servers, group id, topics, offset reset, SASL (SCRAM-SHA-512 / PLAIN) and TLS."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Literal

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from skysift.errors import ConfigError, InvalidArgument

DEMO_ALERTS = "demo/alerts"
PacketFormat = Literal["auto", "avro", "confluent", "schemaless", "parquet"]


class IngestSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SKYSIFT_INGEST_", extra="ignore")

    source: Literal["replay", "kafka"] = "replay"
    replay_path: str | None = None  # a file or directory of packets; None: the bundled demo/alerts
    max_alerts: int = 1000
    timeout_s: float = 60.0
    keep_cutouts: bool = False
    filter: str | None = None  # a preset of skysift.alerts.filters, e.g. "fink_vra"
    dedup_days: int = 3  # candids of the alerts written in this many past nights are not written again
    # Level-triggered catch-up (skysift.backlog): each poll also hands on up to catchup_batches earlier alerts
    # batches, written in the last catchup_days and at least catchup_grace_s ago, that lack a later stage's file.
    catchup_days: float = 30.0
    catchup_batches: int = 20
    catchup_grace_s: float = 300.0
    # Over gRPC, replay paths must lie under this directory (default: the service's working directory), so a
    # client cannot make the service read arbitrary files; the CLI's in-process polls are not restricted.
    replay_root: str | None = None
    # s3://BUCKET/... replays over gRPC may read these buckets besides the store's own (comma-separated)
    replay_buckets: Annotated[list[str], NoDecode] = []

    @field_validator("replay_buckets", mode="before")
    @classmethod
    def _split_buckets(cls, value):
        return [b.strip() for b in value.split(",") if b.strip()] if isinstance(value, str) else value

    def check_replay_path(self, path: str, store_url: str = "") -> str:
        """A replay path a gRPC client may ask for: files under the replay root, any key of the service's own store
        (``store://``), or an ``s3://`` bucket that is the store's own or listed in SKYSIFT_INGEST_REPLAY_BUCKETS."""
        if path.startswith("store://"):
            return path
        if path.startswith("s3://"):
            bucket = path.removeprefix("s3://").partition("/")[0]
            if bucket in self.replay_buckets or store_url.startswith(f"s3://{bucket}/") or store_url == f"s3://{bucket}":
                return path
            raise InvalidArgument(f"replay_path {path!r}: bucket {bucket!r} is neither the ingest service's store nor "
                                  f"in SKYSIFT_INGEST_REPLAY_BUCKETS")
        root = Path(self.replay_root or ".").resolve()
        try:
            resolved = Path(path).resolve()
        except (ValueError, OSError) as exc:  # e.g. an embedded NUL byte
            raise InvalidArgument(f"replay_path {path!r} is not a usable path: {exc}") from None
        if resolved != root and root not in resolved.parents:
            raise InvalidArgument(
                f"replay_path {path!r} is outside the ingest service's replay root {str(root)!r} (SKYSIFT_INGEST_REPLAY_ROOT)"
            )
        return str(resolved)

    def default_replay_path(self) -> str:
        """The configured replay path, else demo/alerts here or in the source checkout."""
        if self.replay_path:
            return self.replay_path
        here = Path(DEMO_ALERTS)
        if here.exists():
            return str(here)
        return str(Path(__file__).resolve().parents[3] / DEMO_ALERTS)


class LibrdkafkaLog:
    """librdkafka's own log lines, all at DEBUG on the ``skysift.kafka.librdkafka`` logger (SKYSIFT_LOG_LEVEL=DEBUG
    shows them). Left to itself it writes to stderr at every failed connect, ~190 lines for one poll of a closed
    port; whatever failure it logs also reaches the error callback or the failed call, which say it once."""

    def __init__(self) -> None:
        self._log = logging.getLogger("skysift.kafka.librdkafka")

    def log(self, level: int, msg: str, *args) -> None:
        self._log.debug(msg, *args)


LIBRDKAFKA_LOG = LibrdkafkaLog()


def unreachable(bootstrap_servers: str, reason: str) -> str:
    """The one line an unreachable broker gives: which broker, why, and what to check."""
    return (f"Kafka broker unreachable at {bootstrap_servers} ({reason}): check SKYSIFT_KAFKA_BOOTSTRAP_SERVERS, "
            f"that the broker is running and reachable from here, and SKYSIFT_KAFKA_SECURITY_PROTOCOL")


class KafkaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SKYSIFT_KAFKA_", extra="ignore")

    bootstrap_servers: str = ""
    group_id: str = "skysift-ingest"
    topics: Annotated[list[str], NoDecode] = []  # comma-separated in the environment
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None
    format: PacketFormat = "auto"  # for every topic not in `formats`
    formats: dict[str, PacketFormat] = {}  # per topic, JSON in the environment: {"lsst-alerts": "confluent"}
    schema_path: str | None = None  # writer schema of schemaless topics whose messages carry none in the key
    batch_size: int = 500  # messages per consume() call
    session_timeout_ms: int = 45000  # how soon the group drops a consumer that died without leaving
    stop_at_end: bool = True  # a poll ends early once drained (every partition, see KafkaSource._drained)

    @field_validator("topics", mode="before")
    @classmethod
    def _split_topics(cls, value):
        if isinstance(value, str):
            return [t.strip() for t in value.split(",") if t.strip()]
        return value

    def consumer_config(self) -> dict:
        """librdkafka configuration; the password is only revealed here, never logged."""
        if not self.bootstrap_servers:
            raise ConfigError("SKYSIFT_KAFKA_BOOTSTRAP_SERVERS is required when SKYSIFT_INGEST_SOURCE=kafka")
        if not self.topics:
            raise ConfigError("SKYSIFT_KAFKA_TOPICS is required when SKYSIFT_INGEST_SOURCE=kafka")
        conf = {
            "bootstrap.servers": self.bootstrap_servers,
            "group.id": self.group_id,
            "auto.offset.reset": self.auto_offset_reset,
            "enable.auto.commit": False,  # offsets are committed only after the parquet is durable
            "enable.partition.eof": True,
            "security.protocol": self.security_protocol,
            "logger": LIBRDKAFKA_LOG,
        }
        if self.security_protocol.startswith("SASL"):
            if not (self.sasl_mechanism and self.sasl_username and self.sasl_password):
                raise ConfigError("SASL needs SKYSIFT_KAFKA_SASL_MECHANISM, _SASL_USERNAME and _SASL_PASSWORD")
            conf.update({"sasl.mechanism": self.sasl_mechanism, "sasl.username": self.sasl_username,
                         "sasl.password": self.sasl_password.get_secret_value()})
        if self.ssl_ca_location:
            conf["ssl.ca.location"] = self.ssl_ca_location
        return conf

    def topic_format(self, topic: str) -> str:
        return self.formats.get(topic, self.format)
