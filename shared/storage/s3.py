"""S3-compatible storage through boto3 (SigV4, path-style addressing).

Uploads skip the boto3 client's per-call machinery (endpoint-ruleset
resolution, event hooks, the response parser: about 1.2 ms of CPU per call on
this project's reference machine): the PUT is signed by botocore's own SigV4
signer for S3 and sent directly, the request ``put_object`` sends (path-style
URL, signed payload hash).  Two ways to send it:

* :meth:`S3Storage.put_bytes` over a pooled urllib3 connection, for the
  worker's threads, with the same two quick retries the boto3 client makes;
* :meth:`S3Storage.put_bytes_async` with aiohttp on the running event loop,
  for the API: each submission stores its photo, and handing that upload to
  a thread (then waiting for the GIL back) cost the API a fifth of a
  submission's CPU time.

Error answers surface as botocore's :class:`~botocore.exceptions.ClientError`,
connection failures as urllib3's or aiohttp's errors, for
:class:`~shared.storage.retrying.RetryingStorage` to retry and report.
Everything else goes through the boto3 client.

Two endpoints: ``s3_endpoint`` is where the service itself talks to the store
(inside the deployment's network); ``s3_public_endpoint`` is where clients
reach it, so presigned URLs are signed for that host.  Objects under ``jobs/``
expire after ``s3_retention_days`` through a bucket lifecycle rule set by
:meth:`S3Storage.ensure_bucket`.
"""

from __future__ import annotations

import os
import re
import ssl
import time
from urllib.parse import quote, urlsplit

import aiohttp
import boto3
import urllib3
import yarl
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.httpsession import get_cert_path

from shared.settings import StorageSettings
from shared.storage.base import DownloadUrl
from shared.storage.sigv4 import PresignerV4

RETRIED_STATUSES = frozenset({500, 502, 503, 504})
"""Answers that mean "try again", as the boto3 client's standard retry mode treats them."""
_ERROR_CODE = re.compile(rb"<Code>([^<]+)</Code>")


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
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 20.0,
    ) -> None:
        self.bucket = bucket
        self.retention_days = retention_days
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            max_pool_connections=32,
            # Integrity checksums only where the operation demands one: the
            # payload is SHA-256-signed anyway, and S3-compatible stores differ
            # in which of the newer checksum headers they accept.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
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
        self._signer = S3SigV4Auth(Credentials(access_key, secret_key), "s3", region)
        parts = urlsplit(endpoint)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._bucket_path = f"{parts.path.rstrip('/')}/{quote(bucket, safe='')}/"
        # Over https, the same certificate authorities as the boto3 client.
        self._ca_bundle = (os.environ.get("AWS_CA_BUNDLE") or get_cert_path(True)) if parts.scheme == "https" else None
        tls = {"ca_certs": self._ca_bundle} if self._ca_bundle else {}
        self._pool = urllib3.connection_from_url(
            self._origin,
            **tls,
            maxsize=32,
            timeout=urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s),
            retries=urllib3.Retry(
                total=2, backoff_factor=0.05, status_forcelist=RETRIED_STATUSES,
                allowed_methods=frozenset({"PUT"}), raise_on_status=False,
            ),
        )
        self._timeouts = (connect_timeout_s, read_timeout_s)
        self._session: aiohttp.ClientSession | None = None
        """The event loop's connection pool for :meth:`put_bytes_async`, opened on first use."""

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
            connect_timeout_s=settings.s3_connect_timeout_s,
            read_timeout_s=settings.s3_read_timeout_s,
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

    def _signed(self, method: str, path: str, data: bytes = b"", headers: dict[str, str] | None = None) -> dict[str, str]:
        """The headers that sign ``method path`` (SigV4 over the payload)."""
        request = AWSRequest(method=method, url=self._origin + path, data=data, headers=headers or {})
        self._signer.add_auth(request)
        return dict(request.headers.items())

    def _signed_put(self, key: str, data: bytes, content_type: str) -> tuple[str, dict[str, str]]:
        """The path and headers of the signed PUT that stores ``data`` under ``key``."""
        path = self._bucket_path + quote(key, safe="/~")
        return path, self._signed("PUT", path, data, {"Content-Type": content_type})

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Store ``data`` under ``key`` with one signed PUT (what ``put_object`` sends).

        A single PUT is atomic in S3: readers get the old object or the new one.
        """
        path, headers = self._signed_put(key, data, content_type)
        response = self._pool.urlopen("PUT", path, body=data, headers=headers)
        _raise_for_status(response.status, response.data)

    async def put_bytes_async(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """:meth:`put_bytes` on the running event loop, without a thread."""
        path, headers = self._signed_put(key, data, content_type)
        url = yarl.URL(self._origin + path, encoded=True)  # signed as it is: no re-quoting
        async with self._open_session().put(url, data=data, headers=headers) as response:
            body = await response.read()
        _raise_for_status(response.status, body)

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            tls = ssl.create_default_context(cafile=self._ca_bundle) if self._ca_bundle else None
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=32, ssl=tls if tls is not None else True),
                timeout=aiohttp.ClientTimeout(sock_connect=self._timeouts[0], sock_read=self._timeouts[1]),
            )
        return self._session

    async def aclose(self) -> None:
        """Close the event loop's connections (the API calls this at shutdown)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

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

    def ping(self, timeout_s: float = 5.0) -> None:
        """One signed ``HEAD`` of the bucket, answered within ``timeout_s`` in all (no retry), or raise."""
        response = self._pool.urlopen("HEAD", self._bucket_path, headers=self._signed("HEAD", self._bucket_path),
                                      timeout=urllib3.Timeout(total=timeout_s), retries=False)
        _raise_for_status(response.status, response.data, "HeadBucket")


def _raise_for_status(status: int, body: bytes, operation: str = "PutObject") -> None:
    """Raise the :class:`ClientError` the boto3 client would for an error answer."""
    if status < 300:
        return
    match = _ERROR_CODE.search(body)
    code = match.group(1).decode() if match else str(status)
    raise ClientError(
        {"Error": {"Code": code, "Message": body[:500].decode(errors="replace")},
         "ResponseMetadata": {"HTTPStatusCode": status}},
        operation,
    )
