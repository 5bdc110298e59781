"""App settings (``SKYSIFT_APP_*``) and the access rule: who labels, and whether a login is required.

Labels are attributed to a user, so the app needs a name for every labeller. On a laptop a name typed in the
sidebar is enough; in a cluster anyone who can reach the Service could label, so the app refuses to run
there unless a login is configured: a shared password (``SKYSIFT_APP_PASSWORD``, from the environment or a
mounted secret file) or Streamlit's OIDC login (an ``[auth]`` section in ``.streamlit/secrets.toml``).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from skysift.errors import ConfigError
from skysift.modeltags import DEFAULT_EXPERIMENT, default_tag


class AppSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SKYSIFT_APP_", extra="ignore")

    user: str = ""  # default labeller name when no login is required
    password: SecretStr | None = None  # shared password; each labeller still gives their own name
    require_login: bool = False
    cluster: bool = False  # set by the Helm chart: the app is reachable by others, a login is mandatory
    experiment: str = DEFAULT_EXPERIMENT  # experiment shown first on the label page
    model_tag: str = Field(default_factory=default_tag)
    rpc_timeout_s: float = Field(15.0, gt=0)
    round_timeout_s: float = Field(1800.0, gt=0)  # "run a round now": training on a large pool takes minutes


def oidc_configured(auth: Mapping | None) -> bool:
    """Whether secrets.toml's ``[auth]`` section configures the OIDC login the app starts (``st.login()``, i.e.
    Streamlit's default provider: ``[auth.default]`` or the client keys in ``[auth]`` itself). Raise ConfigError
    when the section is there but incomplete: a login that cannot work must stop the app, not fall back to none."""
    if not auth:
        return False
    provider = auth.get("default") or auth
    missing = [k for k in ("redirect_uri", "cookie_secret") if not auth.get(k)] + [
        k for k in ("client_id", "client_secret", "server_metadata_url") if not provider.get(k)]
    if missing:
        raise ConfigError(f"the [auth] section of .streamlit/secrets.toml lacks {', '.join(missing)}")
    return True


def login_mode(settings: AppSettings, oidc_configured: bool) -> str:
    """How users sign in: ``"oidc"``, ``"password"`` or ``"none"``; raise ConfigError when a login is required
    but none is configured (the app must not start then)."""
    if oidc_configured:
        return "oidc"
    if settings.password is not None and settings.password.get_secret_value():
        return "password"
    if settings.cluster or settings.require_login:
        why = "SKYSIFT_APP_CLUSTER" if settings.cluster else "SKYSIFT_APP_REQUIRE_LOGIN"
        raise ConfigError(
            f"{why} is set but no login is configured: set SKYSIFT_APP_PASSWORD (environment or secret file) "
            "or an [auth] section for OIDC in .streamlit/secrets.toml"
        )
    return "none"


def password_ok(settings: AppSettings, attempt: str) -> bool:
    """Compare in constant time, so the check does not leak how much of the password was right."""
    if settings.password is None:
        return False
    return hmac.compare_digest(settings.password.get_secret_value().encode(), (attempt or "").encode())
