"""Settings of the inference unit and its sinks, each from its own ``SKYSIFT_*`` prefix.

``InferenceSettings`` (``SKYSIFT_INFERENCE_...``) holds the sink settings as fields so one object configures a
stage; each sink is off until its address (or path) is set. Secrets (SkyPortal token, Slack webhook and bot
token) are ``SecretStr``: never printed or logged.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from skysift import config
from skysift.modeltags import tags as model_tags


class SkyPortalSettings(BaseSettings):
    """SkyPortal/Fritz annotations: one per source for ``origin``, visible only to ``group_ids``."""

    model_config = SettingsConfigDict(env_prefix="SKYSIFT_SKYPORTAL_", extra="ignore")

    url: str | None = None  # e.g. https://fritz.science; None: sink off
    token: SecretStr | None = None  # needs the Annotate ACL (read-only tokens get HTTP 401)
    # Never empty when the sink is on: without group ids SkyPortal shares with all the token's groups, sitewide included.
    group_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)  # "1959,1960" or "[1959, 1960]"
    origin: str = "skysift"
    timeout_seconds: float = 10.0

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    @field_validator("group_ids", mode="before")
    @classmethod
    def _split(cls, value):
        if isinstance(value, str):
            return [int(v) for v in value.strip("[] ").replace(",", " ").split()]
        return value

    @model_validator(mode="after")
    def _scoped(self):
        if self.url and not self.group_ids:
            raise ValueError("SKYSIFT_SKYPORTAL_GROUP_IDS must be set with SKYSIFT_SKYPORTAL_URL: without them "
                             "SkyPortal shares the annotation with "
                             "every group of the token, sitewide (public) included")
        if self.url and self.token is None:
            raise ValueError("SKYSIFT_SKYPORTAL_TOKEN must be set with SKYSIFT_SKYPORTAL_URL (a token with the Annotate ACL)")
        if self.url and not re.match(r"^\w+", self.origin):
            raise ValueError("SKYSIFT_SKYPORTAL_ORIGIN must start with a letter, digit or underscore (SkyPortal rejects others)")
        return self


class SlackSettings(BaseSettings):
    """Slack summary of alerts above ``threshold``: an incoming webhook, or a bot token with a channel (plot too)."""

    model_config = SettingsConfigDict(env_prefix="SKYSIFT_SLACK_", extra="ignore")

    webhook_url: SecretStr | None = None
    bot_token: SecretStr | None = None
    channel: str | None = None  # channel id for chat.postMessage and the plot upload (bot token only)
    api_url: str = "https://slack.com/api"
    threshold: float = 0.9
    max_alerts: int = 20  # lines listed in one message; the rest are counted
    plot: bool = True  # attach a probability plot (needs bot_token + channel: webhooks cannot upload files)
    timeout_seconds: float = 10.0

    @property
    def enabled(self) -> bool:
        return self.webhook_url is not None or (self.bot_token is not None and bool(self.channel))


class CsvSettings(BaseSettings):
    """A rolling CSV of every classification, rotated by UTC day or by size."""

    model_config = SettingsConfigDict(env_prefix="SKYSIFT_CSV_", extra="ignore")

    path: str | None = None  # e.g. results/skysift_predictions.csv; None: sink off
    rotation: Literal["day", "size", "none"] = "day"
    max_mb: float = 100.0  # for rotation=size

    @property
    def enabled(self) -> bool:
        return bool(self.path)


class InferenceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SKYSIFT_INFERENCE_", extra="ignore")

    # Served tags ("galactic,realbogus"); requests pick among them.
    model_tags: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(model_tags()))
    alias: str = "champion"
    poll_seconds: float = 60.0  # how often the registry is asked whether the alias moved
    # Candid lookups: features batches kept in memory (least recently used dropped first).
    cached_batches: int = 64
    sink_attempts: int = 4  # tries per sink call before it is reported failed
    sink_backoff_seconds: float = 0.5  # first retry delay, doubled each time
    skyportal: SkyPortalSettings = Field(default_factory=lambda: config.load(SkyPortalSettings))
    slack: SlackSettings = Field(default_factory=lambda: config.load(SlackSettings))
    csv: CsvSettings = Field(default_factory=lambda: config.load(CsvSettings))

    @field_validator("model_tags", mode="before")
    @classmethod
    def _split(cls, value):
        if isinstance(value, str):
            return [v.strip(' "') for v in value.strip("[] ").split(",") if v.strip(' "')]
        return value

    @field_validator("model_tags")
    @classmethod
    def _known_tags(cls, tags: list[str]) -> list[str]:
        unknown = [t for t in tags if t not in model_tags()]
        if unknown:
            raise ValueError(f"unknown model tags {unknown}; expected some of {list(model_tags())}")
        return tags
