"""Settings of the enrichment unit (``SKYSIFT_ENRICHMENT_...``).

The Lasair token is a secret: ``SKYSIFT_ENRICHMENT_LASAIR_TOKEN`` in the environment or a file of that name in
``SKYSIFT_SECRETS_DIR``. Without it, enrichment still runs (extinction, Fink's values) and Sherlock columns are
null with status ``not_configured``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from skysift.alerts import surveys
from skysift.enrichment.catalogs import HOST_RADIUS_ARCSEC, VARSTAR_RADIUS_ARCSEC


class EnrichmentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SKYSIFT_ENRICHMENT_", extra="ignore")

    lasair_token: SecretStr | None = None
    # survey -> Lasair API, replacing the survey's own (skysift.alerts.surveys), e.g. a mirror or a test fake:
    # SKYSIFT_ENRICHMENT_LASAIR_URLS='{"ztf": "https://..."}'
    lasair_urls: dict[str, str] = Field(default_factory=dict)
    # "position" (as the prototype: works for any alert, even one Lasair has not ingested yet) or "object"
    # (by objectId; falls back to the position when Lasair does not know the object).
    sherlock_lookup: Literal["position", "object"] = "position"
    sherlock_lite: bool = False  # lite=True returns only the top-ranked crossmatch
    timeout_seconds: float = Field(10.0, gt=0)
    # Retries per call on 429 (when Lasair asks to wait at most max_wait_seconds), 5xx and network errors.
    max_retries: int = Field(3, ge=0)
    backoff_seconds: float = Field(2.0, ge=0)  # doubled at each retry when Lasair gives no Retry-After
    max_wait_seconds: float = Field(60.0, ge=0)  # a longer Retry-After means the hourly quota is spent: stop calling
    # A user token allows 100 calls per hour: an hourly poll spends at most this many; the rest waits for later.
    max_calls_per_batch: int = Field(100, ge=0)
    max_consecutive_failures: int = Field(3, ge=1)  # then Lasair is taken as down for the rest of the batch
    cache_prefix: str = "enrichment/sherlock_cache"
    cache_read_threads: int = Field(16, ge=1)  # cache reads are one small object each: overlap their latency
    # Directory holding dustmaps' SFD files (sfd/SFD_dust_4096_{ngp,sgp}.fits): full-resolution E(B-V) when present.
    dustmaps_dir: str | None = None
    # Offline cross-match (VSX, GCVS, Mangrove; see skysift.enrichment.catalogs). The directory defaults to the one
    # `skysift catalogs install` fills inside the Python environment; a directory set here must hold them.
    offline_catalogs: bool = True
    catalogs_dir: str | None = None
    host_radius_arcsec: float = Field(HOST_RADIUS_ARCSEC, gt=0, le=3600)  # nearest Mangrove galaxy within this
    varstar_radius_arcsec: float = Field(VARSTAR_RADIUS_ARCSEC, gt=0, le=60)

    @property
    def sherlock_configured(self) -> bool:
        return self.lasair_token is not None and bool(self.lasair_token.get_secret_value())

    def lasair_url(self, survey: str) -> str | None:
        """The Lasair API serving ``survey``'s Sherlock cross-match, None if it has none."""
        return self.lasair_urls.get(survey) or surveys.get(survey).lasair_api
