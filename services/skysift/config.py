"""Typed settings from the environment (``SKYSIFT_*``), with secrets from env or mounted files.

Every unit reads its own settings class (e.g. ``KafkaSettings`` in ``ingest/settings.py``) so that a unit's
configuration is declared next to it; :func:`load` resolves any of them and turns validation errors into one
clear :class:`~skysift.errors.ConfigError` that names the environment variables at fault.
Secrets are ``SecretStr``: never printed, never logged. In Kubernetes they are files mounted under
``SKYSIFT_SECRETS_DIR`` (default ``/var/run/secrets/skysift``), one file per variable, named like it
(e.g. ``SKYSIFT_S3_SECRET_ACCESS_KEY``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from skysift.errors import ConfigError

DEFAULT_SECRETS_DIR = "/var/run/secrets/skysift"
# Registered models are ``<prefix>_<tag>``: deployments sharing one MLflow server (or test modules sharing one
# test server) keep their champions apart with their own prefix.
DEFAULT_MODEL_PREFIX = "skysift"
DEFAULT_TAXONOMY_FILE = Path(__file__).with_name("taxonomy.yaml")  # the vocabulary and tags (skysift.modeltags)

SERVICES = ("ingest", "enrichment", "features", "inference", "trainer")
DEFAULT_PORTS = {"ingest": 50051, "enrichment": 50052, "features": 50053, "inference": 50054, "trainer": 50055}


class Settings(BaseSettings):
    """What every service and the CLI share: where the store and MLflow are, where each service listens."""

    model_config = SettingsConfigDict(env_prefix="SKYSIFT_", extra="ignore")

    store_url: str = ".skysift/store"  # a local directory or s3://bucket/prefix
    s3_endpoint_url: str | None = None  # e.g. http://minio:9000; None: AWS
    s3_region: str = "us-east-1"
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None

    mlflow_tracking_uri: str = "sqlite:///.skysift/mlflow.db"
    mlflow_model_prefix: str = DEFAULT_MODEL_PREFIX  # registered models are <prefix>_<model tag>
    # the label vocabulary and model tags (YAML, see skysift/taxonomy.yaml); every service must read the same file
    taxonomy_file: Path = DEFAULT_TAXONOMY_FILE

    host: str = "127.0.0.1"  # bind address of the gRPC and metrics servers; 0.0.0.0 only inside a cluster
    ingest_address: str = f"127.0.0.1:{DEFAULT_PORTS['ingest']}"
    enrichment_address: str = f"127.0.0.1:{DEFAULT_PORTS['enrichment']}"
    features_address: str = f"127.0.0.1:{DEFAULT_PORTS['features']}"
    inference_address: str = f"127.0.0.1:{DEFAULT_PORTS['inference']}"
    trainer_address: str = f"127.0.0.1:{DEFAULT_PORTS['trainer']}"
    grpc_max_message_mb: int = 64
    grpc_workers: int = 8
    shutdown_grace_seconds: float = 10.0

    log_level: str = "INFO"
    log_json: bool = True

    def address(self, service: str) -> str:
        return getattr(self, f"{service}_address")


S = TypeVar("S", bound=BaseSettings)


def secrets_dir() -> str | None:
    path = os.environ.get("SKYSIFT_SECRETS_DIR", DEFAULT_SECRETS_DIR)
    return path if Path(path).is_dir() else None


def load(cls: type[S] = Settings) -> S:  # type: ignore[assignment]
    """Build ``cls`` from the environment, failing fast with the names of the variables at fault."""
    try:
        return cls(_secrets_dir=secrets_dir())  # type: ignore[call-arg]
    except ValidationError as exc:
        prefix = cls.model_config.get("env_prefix", "")
        problems = []
        for err in exc.errors():
            name = prefix + "_".join(str(p) for p in err["loc"]).upper()
            problems.append(f"{name}: {err['msg']}")
        raise ConfigError(f"invalid {cls.__name__}: " + "; ".join(problems)) from None
