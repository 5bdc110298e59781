"""Object store: one interface (:class:`ObjectStore`), a local-directory backend and an S3 backend."""

from skysift.store.base import ObjectStore, open_store

__all__ = ["ObjectStore", "open_store"]
