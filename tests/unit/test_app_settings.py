import pytest

from skysift import config
from skysift.app.settings import AppSettings, login_mode, password_ok
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
