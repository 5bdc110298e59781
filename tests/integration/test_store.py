"""The object-store contract, run against both backends: a local directory and a real S3 server."""

import threading

import pyarrow as pa
import pytest
from pydantic import SecretStr

from skysift.errors import InvalidArgument, NotFound
from skysift.store import open_store


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return open_store(str(tmp_path / "store"))
    settings = request.getfixturevalue("s3_settings")
    return open_store(settings=settings)


def test_round_trip_table_and_listing(store):
    table = pa.table({"candid": pa.array([1, 2, 3], pa.int64()), "mag": [18.1, 19.2, None]})
    key = "alerts/survey=ztf/night=20250101/20250101_120000_alerts.parquet"
    store.write_table(key, table)
    assert store.read_table(key).equals(table)
    assert store.exists(key)
    store.put_bytes("alerts/survey=ztf/night=20250102/x.bin", b"x")
    assert store.list_keys("alerts/survey=ztf/night=20250101/") == [key]
    assert len(store.list_keys("alerts/")) == 2
    store.delete(key)
    assert not store.exists(key)


def test_missing_key_is_not_found_with_key_in_message(store):
    with pytest.raises(NotFound, match="nope.parquet"):
        store.get_bytes("features/nope.parquet")


def test_put_if_absent_never_overwrites(store):
    key = "labels/events/a.json"
    assert store.put_if_absent(key, b"first")
    assert not store.put_if_absent(key, b"second")
    assert store.get_bytes(key) == b"first"


@pytest.mark.parametrize("bad", ["", "/abs", "a/../../etc/passwd", "dir/"])
def test_bad_keys_rejected(store, bad):
    with pytest.raises(InvalidArgument):
        store.put_bytes(bad, b"x")


def test_readers_never_see_partial_objects(store):
    """Concurrent readers of a key being rewritten see one whole version or the other."""
    key = "features/survey=ztf/night=20250101/20250101_000000_features.parquet"
    versions = [bytes([i]) * 200_000 for i in range(2)]
    store.put_bytes(key, versions[0])
    seen, stop = [], threading.Event()

    def read():
        while not stop.is_set():
            seen.append(store.get_bytes(key))

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(20):
        store.put_bytes(key, versions[i % 2])
    stop.set()
    reader.join()
    assert seen and all(b in versions for b in seen)


def test_s3_refusing_the_credentials_is_a_clear_failed_precondition(s3_settings):
    from skysift.errors import FailedPrecondition

    wrong = s3_settings.model_copy(update={"s3_secret_access_key": SecretStr("not-the-secret-0123456789")})
    with pytest.raises(FailedPrecondition) as info:
        open_store(settings=wrong).get_bytes("labels/events/x.json")
    assert "SignatureDoesNotMatch" in str(info.value) and "not-the-secret" not in str(info.value)


def test_s3_without_credentials_says_which_settings_are_missing(s3_settings, monkeypatch):
    from skysift.errors import FailedPrecondition

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    none = s3_settings.model_copy(update={"s3_access_key_id": None, "s3_secret_access_key": None})
    with pytest.raises(FailedPrecondition, match="SKYSIFT_S3_ACCESS_KEY_ID"):
        open_store(settings=none).list_keys("alerts/")
