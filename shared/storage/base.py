"""The storage interface every backend implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class DownloadUrl:
    url: str
    expires_at: float
    """Unix time after which the URL is refused."""


class Storage(Protocol):
    """Keys are ``/``-separated paths such as ``jobs/{id}/stage2/output.glb``."""

    name: str

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Write one object; readers see the old object or the whole new one, never a part."""

    async def put_bytes_async(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """:meth:`put_bytes` for code on an event loop (the API)."""

    async def aclose(self) -> None:
        """Release what :meth:`put_bytes_async` opened on the event loop."""

    def get_bytes(self, key: str) -> bytes:
        """Read one object; raises KeyError if it does not exist."""

    def list_keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix``, sorted."""

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key under ``prefix``; returns how many were deleted."""

    def download_url(self, key: str, ttl_s: int, *, now: float | None = None) -> DownloadUrl:
        """A URL a plain HTTP client can GET until it expires (no credentials needed)."""

    def ping(self, timeout_s: float = 5.0) -> None:
        """Raise if the store cannot be written to (local) or reached (S3) within ``timeout_s``."""


CONTENT_TYPES = {
    ".glb": "model/gltf-binary",
    ".ply": "application/octet-stream",
    ".png": "image/png",
    ".zip": "application/zip",
    ".npz": "application/octet-stream",
    ".json": "application/json",
    ".mp4": "video/mp4",
    ".webp": "image/webp",
    ".usdz": "model/vnd.usdz+zip",
}


def content_type_for(key: str) -> str:
    for suffix, content_type in CONTENT_TYPES.items():
        if key.endswith(suffix):
            return content_type
    return "application/octet-stream"
