"""Where job inputs and artifacts live: one small interface, two backends.

``local`` (the embedded default) keeps files on disk and the API serves them
under signed, expiring URLs it checks itself; ``s3`` talks to any
S3-compatible store and hands out presigned GET URLs.
"""

from __future__ import annotations

from shared.settings import StorageSettings
from shared.storage.base import DownloadUrl, Storage


def build_storage(settings: StorageSettings) -> Storage:
    """The backend ``settings.backend`` names."""
    if settings.backend == "s3":
        from shared.storage.s3 import S3Storage

        return S3Storage.from_settings(settings)
    from shared.storage.local import LocalStorage

    return LocalStorage.from_settings(settings)


__all__ = ["DownloadUrl", "Storage", "build_storage"]
