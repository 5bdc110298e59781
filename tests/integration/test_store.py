"""The object-store contract, run against both backends: a local directory and a real S3 server."""

import threading

import pyarrow as pa
import pytest

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
