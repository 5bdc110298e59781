"""S3 backend for any S3 endpoint (MinIO, SeaweedFS, AWS) through boto3; no vendor SDK.

A single PutObject is atomic in S3: readers see the whole new object or the old one, never a part, so
writes go straight to the final key instead of the temp-key-then-copy dance a filesystem needs.
Append-only records use a conditional put (``If-None-Match: *``) where the server supports it.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from skysift.errors import FailedPrecondition, NotFound, Unavailable
from skysift.store.base import ObjectStore, check_key

# Answers that no retry will change: the deployment's credentials or bucket are wrong.
REFUSED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "NoSuchBucket", "403"}


def _mapped(method):
    """A public method of the store raises skysift errors only: whatever S3 failure is left after the method's own
    handling (a 5xx, a dropped connection) is UNAVAILABLE, naming the store, so callers never see botocore."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise Unavailable(f"object store {self.url} unavailable: {type(exc).__name__}: {exc}") from None
    return wrapper


class S3Store(ObjectStore):
    def __init__(self, url: str, settings):
        parsed = urlparse(url)
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.url = url
        secret = settings.s3_secret_access_key
        access = settings.s3_access_key_id
        self.client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=access.get_secret_value() if access else None,
            aws_secret_access_key=secret.get_secret_value() if secret else None,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60,
                          max_pool_connections=32),  # readers GET with 16 threads (boto3 pools 10 by default)
        )
        self._conditional_put = True

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextmanager
    def _errors(self, bucket_may_be_missing: bool = False):
        """S3 failures as skysift errors with the store named (never a credential): unreachable is UNAVAILABLE
        (a CronJob retries), missing or refused credentials and a missing bucket FAILED_PRECONDITION."""
        try:
            yield
        except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError) as exc:
            raise Unavailable(f"S3 endpoint unreachable for {self.url}: {exc}") from None
        except (NoCredentialsError, PartialCredentialsError):
            raise FailedPrecondition(f"no S3 credentials for {self.url}: set SKYSIFT_S3_ACCESS_KEY_ID and "
                                     "SKYSIFT_S3_SECRET_ACCESS_KEY (or their files in SKYSIFT_SECRETS_DIR)") from None
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in REFUSED and not bucket_may_be_missing:
                raise FailedPrecondition(f"S3 refused the request for {self.url}: {code} "
                                         f"(check the bucket and the S3 credentials)") from None
            raise

    def _call(self, fn, **kwargs):
        with self._errors():
            return fn(Bucket=self.bucket, **kwargs)

    @_mapped
    def ensure_bucket(self) -> None:
        try:
            with self._errors(bucket_may_be_missing=True):
                self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self._call(self.client.create_bucket)

    @_mapped
    def put_bytes(self, key: str, data: bytes) -> None:
        self._call(self.client.put_object, Key=self._key(key), Body=data)

    @_mapped
    def put_if_absent(self, key: str, data: bytes) -> bool:
        if self._conditional_put:
            try:
                self._call(self.client.put_object, Key=self._key(key), Body=data, IfNoneMatch="*")
                return True
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                    return False
                if code not in ("NotImplemented", "501"):
                    raise
                self._conditional_put = False
        if self.exists(key):  # fallback for servers without conditional writes; keys carry a uuid anyway
            return False
        self.put_bytes(key, data)
        return True

    @_mapped
    def get_bytes(self, key: str) -> bytes:
        try:
            return self._call(self.client.get_object, Key=self._key(key))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise NotFound(f"no object at key {key!r} in store {self.url}") from None
            raise

    @_mapped
    def exists(self, key: str) -> bool:
        try:
            self._call(self.client.head_object, Key=self._key(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    @_mapped
    def list_keys(self, prefix: str = "", start_after: str | None = None) -> list[str]:
        if ".." in prefix.split("/") or prefix.startswith("/"):
            check_key(prefix)
        full = (f"{self.prefix}/{prefix}" if self.prefix else prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        after = {"StartAfter": self._key(start_after)} if start_after else {}
        with self._errors():
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full, **after):
                keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
        return sorted(keys)

    @_mapped
    def delete(self, key: str) -> None:
        self._call(self.client.delete_object, Key=self._key(key))
