"""Object store: one interface (:class:`ObjectStore`), a local-directory backend and an S3 backend."""

from skysift import config
from skysift.store.base import ObjectStore
from skysift.store.local import LocalStore

__all__ = ["ObjectStore", "open_store"]


def open_store(url: str | None = None, settings=None) -> ObjectStore:
    """Open the store at ``url`` (a directory or ``s3://bucket/prefix``), default from settings."""
    settings = settings or config.load()
    url = url or settings.store_url
    if url.startswith("s3://"):
        from skysift.store.s3 import S3Store  # boto3 costs ~0.5 s to import: only for an S3 store

        return S3Store(url, settings)
    return LocalStore(url.removeprefix("file://"))
