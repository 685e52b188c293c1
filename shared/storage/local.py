"""Local-disk storage: the embedded default.

Files live under ``storage.local_dir``.  Download URLs point at the API's
``/files/{key}`` route and carry ``expires`` and an HMAC-SHA256 ``signature``
of ``key`` and ``expires`` under ``storage.signing_secret``; the API checks both
(:meth:`LocalStorage.verify`) before it serves a byte.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

from shared.errors import ConfigurationError
from shared.settings import StorageSettings
from shared.storage.base import DownloadUrl


class LocalStorage:
    name = "local"

    def __init__(self, root: Path, *, signing_secret: str, public_base_url: str) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._secret = signing_secret.encode()
        self.public_base_url = public_base_url.rstrip("/")

    @classmethod
    def from_settings(cls, settings: StorageSettings) -> LocalStorage:
        if not settings.signing_secret:
            raise ConfigurationError("SYNCHUMAN_STORAGE__SIGNING_SECRET is not set: local download URLs cannot be signed")
        return cls(settings.local_dir, signing_secret=settings.signing_secret, public_base_url=settings.public_base_url)

    def path_of(self, key: str) -> Path:
        """The file of ``key``; refuses keys that would leave the root."""
        if not key or key.startswith("/") or any(part in ("", ".", "..") for part in key.split("/")):
            raise KeyError(key)
        return self.root / key

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        path = self.path_of(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write beside the target, then rename: readers never see a partial file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def put_bytes_async(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        await asyncio.to_thread(self.put_bytes, key, data, content_type)

    async def aclose(self) -> None:
        """Nothing is held open."""

    def get_bytes(self, key: str) -> bytes:
        path = self.path_of(key)
        if not path.is_file():
            raise KeyError(key)
        return path.read_bytes()

    def list_keys(self, prefix: str) -> list[str]:
        base = self.root / prefix if prefix else self.root
        if not base.exists():
            return []
        keys = [
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        ]
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list_keys(prefix)
        base = self.path_of(prefix.rstrip("/"))
        if base.is_dir():
            shutil.rmtree(base)
        return len(keys)

    def signature(self, key: str, expires: int) -> str:
        return hmac.new(self._secret, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def download_url(self, key: str, ttl_s: int, *, now: float | None = None) -> DownloadUrl:
        expires = int((time.time() if now is None else now) + ttl_s)
        url = f"{self.public_base_url}/files/{quote(key)}?expires={expires}&signature={self.signature(key, expires)}"
        return DownloadUrl(url=url, expires_at=float(expires))

    def verify(self, key: str, expires: int, signature: str, *, now: float | None = None) -> bool:
        """True if ``signature`` was minted by this store for ``key`` and has not expired."""
        if expires < (time.time() if now is None else now):
            return False
        # Bytes, not str: compare_digest refuses non-ASCII strings, and a URL may carry anything.
        return hmac.compare_digest(self.signature(key, expires).encode(), signature.encode("utf-8", "surrogatepass"))

    def ping(self, timeout_s: float = 5.0) -> None:
        """Write and delete a probe file under the root: a missing, read-only or replaced directory raises."""
        probe = self.root / f".tmp-ping-{uuid.uuid4().hex}"
        probe.write_bytes(b"ping")
        probe.unlink()
