import pytest

from skysift import config
from skysift.app.settings import AppSettings, login_mode, oidc_configured, password_ok
from skysift.errors import ConfigError


def app_settings(monkeypatch, **env) -> AppSettings:
    for name, value in env.items():
        monkeypatch.setenv(f"SKYSIFT_APP_{name.upper()}", value)
    return config.load(AppSettings)


def test_cluster_without_login_refuses_to_start(monkeypatch):
    settings = app_settings(monkeypatch, cluster="true")
    with pytest.raises(ConfigError, match="SKYSIFT_APP_CLUSTER.*SKYSIFT_APP_PASSWORD"):
        login_mode(settings, oidc_configured=False)


def test_require_login_without_login_refuses_to_start(monkeypatch):
    with pytest.raises(ConfigError, match="SKYSIFT_APP_REQUIRE_LOGIN"):
        login_mode(app_settings(monkeypatch, require_login="1"), oidc_configured=False)


def test_cluster_with_password_uses_the_password_form(monkeypatch):
    assert login_mode(app_settings(monkeypatch, cluster="true", password="s3cret"), oidc_configured=False) == "password"


def test_oidc_takes_precedence_when_configured(monkeypatch):
    assert login_mode(app_settings(monkeypatch, cluster="true", password="s3cret"), oidc_configured=True) == "oidc"


AUTH = {"redirect_uri": "https://skysift.example.org/oauth2callback", "cookie_secret": "c" * 32,
        "client_id": "skysift", "client_secret": "s3cret", "server_metadata_url":
        "https://idp.example.org/.well-known/openid-configuration"}


def test_oidc_configured_by_the_auth_section_or_its_default_provider():
    assert oidc_configured(AUTH)
    client = {k: AUTH[k] for k in ("client_id", "client_secret", "server_metadata_url")}
    assert oidc_configured({"redirect_uri": AUTH["redirect_uri"], "cookie_secret": "c" * 32, "default": client})
    assert not oidc_configured(None) and not oidc_configured({})


def test_incomplete_auth_section_refuses_to_start():
    """An [auth] section that st.login cannot use must not pass for a login (nor fall back to none)."""
    with pytest.raises(ConfigError, match="lacks client_secret, server_metadata_url"):
        oidc_configured({k: v for k, v in AUTH.items() if k not in ("client_secret", "server_metadata_url")})
    with pytest.raises(ConfigError, match="lacks cookie_secret"):
        oidc_configured({**AUTH, "cookie_secret": ""})


def test_laptop_needs_no_login(monkeypatch):
    assert login_mode(app_settings(monkeypatch), oidc_configured=False) == "none"


def test_password_from_secret_file_is_checked_and_never_shown(tmp_path, monkeypatch):
    (tmp_path / "SKYSIFT_APP_PASSWORD").write_text("from-a-file")
    monkeypatch.setenv("SKYSIFT_SECRETS_DIR", str(tmp_path))
    settings = config.load(AppSettings)
    assert password_ok(settings, "from-a-file")
    assert not password_ok(settings, "from-a-fil")
    assert "from-a-file" not in repr(settings)


def test_no_password_configured_accepts_nothing(monkeypatch):
    assert not password_ok(app_settings(monkeypatch), "")


def test_one_default_experiment_and_threshold_across_cli_app_and_chart():
    """A newcomer moving between `skysift`, the app and the chart meets the same experiment and threshold."""
    import inspect
    from pathlib import Path

    import yaml

    from skysift.app.settings import AppSettings
    from skysift.modeltags import DEFAULT_EXPERIMENT
    from skysift.trainer import cli as trainer_cli
    from skysift.trainer.datasets import DatasetRequest

    round_default = inspect.signature(trainer_cli.round_command).parameters["experiment"].default.default
    chart = yaml.safe_load((Path(__file__).resolve().parents[2] / "charts/skysift/values.yaml").read_text())
    assert AppSettings().experiment == round_default == chart["round"]["experiment"] == DEFAULT_EXPERIMENT
    collect_default = inspect.signature(trainer_cli.dataset_collect).parameters["score_threshold"].default.default
    assert collect_default == DatasetRequest.score_threshold  # the datasets page's default
