"""S3-compatible storage through boto3 (SigV4, path-style addressing).

Two endpoints: ``s3_endpoint`` is where the service itself talks to the store
(inside the deployment's network); ``s3_public_endpoint`` is where clients
reach it, so presigned URLs are signed for that host.  Objects under ``jobs/``
expire after ``s3_retention_days`` through a bucket lifecycle rule set by
:meth:`S3Storage.ensure_bucket`.
"""

from __future__ import annotations

import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from shared.settings import StorageSettings
from shared.storage.base import DownloadUrl
from shared.storage.sigv4 import PresignerV4


class S3Storage:
    name = "s3"

    def __init__(
        self,
        *,
        endpoint: str,
        public_endpoint: str | None,
        bucket: str,
        region: str,
        access_key: str,
        secret_key: str,
        retention_days: int = 7,
    ) -> None:
        self.bucket = bucket
        self.retention_days = retention_days
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
            max_pool_connections=32,
        )
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=region,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=config,
        )
        self.presigner = PresignerV4(
            endpoint=public_endpoint or endpoint, access_key=access_key, secret_key=secret_key, region=region
        )

    @classmethod
    def from_settings(cls, settings: StorageSettings) -> S3Storage:
        return cls(
            endpoint=settings.s3_endpoint,
            public_endpoint=settings.s3_public_endpoint,
            bucket=settings.s3_bucket,
            region=settings.s3_region,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            retention_days=settings.s3_retention_days,
        )

    def ensure_bucket(self) -> None:
        """Create the bucket if missing and ask the store to expire ``jobs/`` after the retention."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)
        try:
            self.client.put_bucket_lifecycle_configuration(
                Bucket=self.bucket,
                LifecycleConfiguration={
                    "Rules": [
                        {
                            "ID": "expire-job-artifacts",
                            "Filter": {"Prefix": "jobs/"},
                            "Status": "Enabled",
                            "Expiration": {"Days": self.retention_days},
                        }
                    ]
                },
            )
        except ClientError:
            # Not every S3-compatible store implements lifecycle rules; the
            # job records still expire from Redis and operators can prune.
            pass

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        # A single PUT is atomic in S3: readers get the old object or the new one.
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise KeyError(key) from exc
            raise

    def list_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list_keys(prefix)
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in chunk]})
        return len(keys)

    def download_url(self, key: str, ttl_s: int, *, now: float | None = None) -> DownloadUrl:
        now = time.time() if now is None else now
        url = self.presigner.presign_get(self.bucket, key, ttl_s, now=now)
        return DownloadUrl(url=url, expires_at=float(int(now) + ttl_s))

    def ping(self) -> None:
        self.client.head_bucket(Bucket=self.bucket)
