import pytest

from skysift.redact import redact_uri


@pytest.mark.parametrize("uri, shown", [
    ("https://alice:s3cret@mlflow.example.org:5000/path", "https://***@mlflow.example.org:5000/path"),
    ("postgresql://u:p@db/mlflow", "postgresql://***@db/mlflow"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("sqlite:///.skysift/mlflow.db", "sqlite:///.skysift/mlflow.db"),
])
def test_credentials_in_uris_are_masked(uri, shown):
    assert redact_uri(uri) == shown


def test_an_unreachable_mlflow_with_credentials_is_reported_without_them():
    from skysift.errors import Unavailable
    from skysift.trainer.tracking import connect

    with pytest.raises(Unavailable) as info:
        connect("http://alice:s3cret@127.0.0.1:9/")
    assert "s3cret" not in str(info.value) and "***@127.0.0.1:9" in str(info.value)
