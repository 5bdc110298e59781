import pytest
from typer.testing import CliRunner

from skysift import config
from skysift.cli import app
from skysift.errors import ConfigError


def test_malformed_value_fails_fast_naming_the_variable(monkeypatch):
    monkeypatch.setenv("SKYSIFT_GRPC_WORKERS", "many")
    with pytest.raises(ConfigError, match="SKYSIFT_GRPC_WORKERS"):
        config.load()


def test_cli_reports_bad_settings_without_a_traceback(monkeypatch):
    monkeypatch.setenv("SKYSIFT_GRPC_MAX_MESSAGE_MB", "lots")
    result = CliRunner().invoke(app, ["config", "check"])
    assert result.exit_code == 2
    assert "SKYSIFT_GRPC_MAX_MESSAGE_MB" in result.output
    assert "Traceback" not in result.output


def test_secrets_come_from_mounted_files_and_are_not_printed(tmp_path, monkeypatch):
    (tmp_path / "SKYSIFT_S3_SECRET_ACCESS_KEY").write_text("hunter2-from-file")
    monkeypatch.setenv("SKYSIFT_SECRETS_DIR", str(tmp_path))
    settings = config.load()
    assert settings.s3_secret_access_key.get_secret_value() == "hunter2-from-file"
    assert "hunter2" not in repr(settings)
    result = CliRunner().invoke(app, ["config", "check"])
    assert result.exit_code == 0 and "hunter2" not in result.output


def test_config_check_validates_every_unit_and_masks_their_secrets(monkeypatch):
    monkeypatch.setenv("SKYSIFT_KAFKA_SASL_PASSWORD", "kafka-pass-123")
    monkeypatch.setenv("SKYSIFT_ENRICHMENT_LASAIR_TOKEN", "lasair-token-456")
    result = CliRunner().invoke(app, ["config", "check"])
    assert result.exit_code == 0, result.output
    assert "SKYSIFT_KAFKA_SASL_PASSWORD = ***  (set here)" in result.output
    assert "SKYSIFT_TRAINER_STRATEGY = " in result.output and "SKYSIFT_SLACK_WEBHOOK_URL = " in result.output
    assert "SKYSIFT_STORE_URL = " in result.output and "store_url" not in result.output  # the variable, not the field
    assert "kafka-pass-123" not in result.output and "lasair-token-456" not in result.output
    monkeypatch.setenv("SKYSIFT_INGEST_MAX_ALERTS", "lots")
    result = CliRunner().invoke(app, ["config", "check"])
    assert result.exit_code == 2 and "SKYSIFT_INGEST_MAX_ALERTS" in result.output
