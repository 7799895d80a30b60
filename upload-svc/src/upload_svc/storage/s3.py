"""Storage in any S3-compatible bucket, through boto3.

The same code serves AWS S3, Google Cloud Storage (its XML API at
``https://storage.googleapis.com`` with HMAC keys), MinIO and R2: only the endpoint URL,
region and addressing style differ. Credentials come from boto3's own chain (the
standard ``AWS_*`` variables, profiles, web identity in a cluster); none pass through
this service's settings.

A single ``PutObject`` is atomic in S3: the object appears whole when the request
succeeds and not at all otherwise, so there is never a partial object to clean up.
Calls that only GCS's interop API lacks (multi-object delete) are avoided: a prefix is
deleted one object at a time (an upload has a handful).

Timeouts and retries are explicit (boto3's standard retry mode, which backs off and
retries throttling and 5xx answers); a failure becomes :class:`StorageUnavailable`,
never a hang.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC
from typing import IO, Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    ReadTimeoutError,
)

from upload_svc.settings import UploadSettings
from upload_svc.storage.base import (
    ListedObject,
    ObjectInfo,
    ObjectNotFound,
    ObjectStream,
    StorageUnavailable,
    StoredObject,
    checked_key,
)

CHUNK = 64 * 1024
NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


def client_config(settings: UploadSettings, pool_size: int = 32) -> Config:
    return Config(
        region_name=settings.s3_region,
        signature_version="s3v4",
        connect_timeout=settings.s3_connect_timeout_seconds,
        read_timeout=settings.s3_read_timeout_seconds,
        retries={"total_max_attempts": settings.s3_max_attempts, "mode": "standard"},
        max_pool_connections=pool_size,
        s3={"addressing_style": settings.s3_addressing_style},
    )


def unavailable(operation: str, error: Exception) -> StorageUnavailable:
    if isinstance(error, ConnectTimeoutError | ReadTimeoutError):
        return StorageUnavailable(f"S3 {operation} timed out", timed_out=True)
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "unknown")
        return StorageUnavailable(f"S3 {operation} failed: {code}")
    return StorageUnavailable(f"S3 {operation} failed: {type(error).__name__}")


def is_not_found(error: ClientError) -> bool:
    return str(error.response.get("Error", {}).get("Code")) in NOT_FOUND_CODES


class S3Storage:
    backend = "s3"

    def __init__(self, settings: UploadSettings, *, pool_size: int = 32) -> None:
        if not settings.s3_bucket:
            raise ValueError("S3_BUCKET is required for the S3 backend")
        self.bucket = settings.s3_bucket
        self.prefix = settings.s3_prefix.strip("/")
        session = boto3.session.Session()
        config = client_config(settings, pool_size)
        self.client = session.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            config=config,
        )
        # Presigned URLs are signed for the host the client will use; that may be a
        # public name for an endpoint this service reaches privately.
        self.presign_client = (
            session.client(
                "s3",
                endpoint_url=settings.s3_presign_endpoint_url,
                region_name=settings.s3_region,
                config=config,
            )
            if settings.s3_presign_endpoint_url
            else self.client
        )

    def _key(self, key: str) -> str:
        checked_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(
        self,
        key: str,
        source: IO[bytes],
        *,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
        cache_control: str | None = None,
        cache: bool = False,
    ) -> None:
        start = source.tell()
        source.seek(0, 2)
        length = source.tell() - start
        source.seek(start)
        extra: dict[str, Any] = {"CacheControl": cache_control} if cache_control else {}
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=source,
                ContentLength=length,
                ContentType=content_type,
                Metadata=dict(metadata or {}),
                **extra,
            )
        except (BotoCoreError, ClientError) as error:
            raise unavailable("put", error) from error

    def head(self, key: str) -> ObjectInfo:
        try:
            answer = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as error:
            if is_not_found(error):
                raise ObjectNotFound(key) from error
            raise unavailable("head", error) from error
        except BotoCoreError as error:
            raise unavailable("head", error) from error
        return ObjectInfo(
            key=key,
            size=int(answer["ContentLength"]),
            content_type=answer.get("ContentType", "application/octet-stream"),
            metadata=answer.get("Metadata", {}),
        )

    def get(self, key: str) -> StoredObject:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as error:
            if is_not_found(error):
                raise ObjectNotFound(key) from error
            raise unavailable("get", error) from error
        except BotoCoreError as error:
            raise unavailable("get", error) from error
        body = answer["Body"]
        info = ObjectInfo(
            key=key,
            size=int(answer["ContentLength"]),
            content_type=answer.get("ContentType", "application/octet-stream"),
            metadata=answer.get("Metadata", {}),
        )
        return StoredObject(info=info, body=ObjectStream(_chunks(body), body.close))

    def read(self, key: str) -> bytes:
        stored = self.get(key)
        try:
            return b"".join(stored.body)
        except (BotoCoreError, OSError) as error:
            raise unavailable("get", error) from error
        finally:
            stored.body.close()

    def exists(self, key: str) -> bool:
        try:
            self.head(key)
        except ObjectNotFound:
            return False
        return True

    def delete(self, key: str) -> bool:
        existed = self.exists(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (BotoCoreError, ClientError) as error:
            raise unavailable("delete", error) from error
        return existed

    def delete_prefix(self, prefix: str) -> int:
        full_prefix = self._key(prefix.rstrip("/")) + "/"
        count = 0
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full_prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    self.client.delete_object(Bucket=self.bucket, Key=item["Key"])
                    count += 1
        except (BotoCoreError, ClientError) as error:
            raise unavailable("delete", error) from error
        return count

    def list_prefix(self, prefix: str) -> list[ListedObject]:
        """One ``ListObjectsV2`` page per 1000 objects; sizes and times come with it."""
        full_prefix = self._key(prefix.rstrip("/")) + "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        listed = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full_prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    listed.append(
                        ListedObject(
                            key=item["Key"][strip:],
                            size=int(item["Size"]),
                            modified=item["LastModified"].astimezone(UTC),
                        )
                    )
        except (BotoCoreError, ClientError) as error:
            raise unavailable("list", error) from error
        return listed

    def presigned_url(self, key: str, expires_in: int) -> str | None:
        try:
            return self.presign_client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self._key(key)},
                ExpiresIn=expires_in,
            )
        except (BotoCoreError, ClientError) as error:
            raise unavailable("presign", error) from error

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as error:
            raise unavailable("head_bucket", error) from error


def _chunks(body: Any) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(CHUNK)
    except (BotoCoreError, OSError) as error:
        raise unavailable("get", error) from error
    finally:
        body.close()
