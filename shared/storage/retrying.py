"""Storage that rides out short outages: retries with exponential backoff, within a deadline.

Wraps any backend.  Each operation is tried up to ``attempts`` times, sleeping
``first_delay_s``, then twice that, ... (at most ``max_delay_s``, with jitter)
between tries, and never past its overall ``deadline_s``: an operation on the
event loop is cut off at the deadline, a blocking one is not retried past it
(the backend's own connect/read timeouts bound each try).  If the store is
still unreachable the operation raises
:class:`~shared.errors.StorageUnavailableError` (retryable, with a
``Retry-After``), which the worker stores on the job: a job is never marked
succeeded without its files.

A missing object (``KeyError``) is an answer, not an outage: it is never
retried.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from shared.errors import StorageUnavailableError
from shared.settings import StorageRetrySettings
from shared.storage.base import DownloadUrl, Storage

log = logging.getLogger("synchuman.storage")

T = TypeVar("T")

NOT_RETRIED = (KeyError, ValueError, TypeError)
"""Exceptions that describe the request, not the store's availability."""


class RetryingStorage:
    def __init__(
        self,
        inner: Storage,
        retry: StorageRetrySettings,
        *,
        deadline_s: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.retry = retry
        self.deadline_s = retry.deadline_s if deadline_s is None else deadline_s
        """Overall limit of one operation, retries included."""
        self._sleep = sleep

    def __getattr__(self, name: str):
        """Backend-specific extras (``ensure_bucket``, ``verify``, ``path_of``) pass straight through."""
        return getattr(self.inner, name)

    def _delays(self) -> Iterator[float]:
        """The pause after each failed try but the last: growing, capped, with jitter."""
        delay = self.retry.first_delay_s
        for _ in range(self.retry.attempts - 1):
            yield min(delay, self.retry.max_delay_s) * random.uniform(0.8, 1.2)
            delay *= 2

    def _next_delay(self, what: str, attempt: int, exc: Exception, delays: Iterator[float], deadline: float) -> float:
        """Log one failed try and return the pause before the next; raise ``StorageUnavailableError``
        when tries are used up or the next one would start past ``deadline``."""
        delay = next(delays, None)
        if delay is None or time.monotonic() + delay >= deadline:
            log.warning("storage unavailable; giving up", extra={"op": what, "attempts": attempt,
                                                                  "error": type(exc).__name__})
            raise StorageUnavailableError(
                f"the object store could not be reached ({what}, {attempt} attempts)"
            ) from exc
        log.info("storage error; retrying", extra={"op": what, "attempt": attempt, "error": type(exc).__name__})
        return delay

    def _call(self, what: str, operation: Callable[[], T]) -> T:
        delays, deadline = self._delays(), time.monotonic() + self.deadline_s
        for attempt in range(1, self.retry.attempts + 1):
            try:
                return operation()
            except NOT_RETRIED:
                raise
            except Exception as exc:
                self._sleep(self._next_delay(what, attempt, exc, delays, deadline))
        raise AssertionError("unreachable")  # the last try raises

    async def _call_async(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        delays, deadline = self._delays(), time.monotonic() + self.deadline_s
        for attempt in range(1, self.retry.attempts + 1):
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    return await operation()
            except NOT_RETRIED:
                raise
            except Exception as exc:  # TimeoutError included: the deadline passed during the try
                await asyncio.sleep(self._next_delay(what, attempt, exc, delays, deadline))
        raise AssertionError("unreachable")  # the last try raises

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self._call("put", lambda: self.inner.put_bytes(key, data, content_type))

    async def put_bytes_async(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        await self._call_async("put", lambda: self.inner.put_bytes_async(key, data, content_type))

    def get_bytes(self, key: str) -> bytes:
        return self._call("get", lambda: self.inner.get_bytes(key))

    def list_keys(self, prefix: str) -> list[str]:
        return self._call("list", lambda: self.inner.list_keys(prefix))

    def delete_prefix(self, prefix: str) -> int:
        return self._call("delete", lambda: self.inner.delete_prefix(prefix))

    def download_url(self, key: str, ttl_s: int, *, now: float | None = None) -> DownloadUrl:
        return self.inner.download_url(key, ttl_s, now=now)

    def ping(self, timeout_s: float = 5.0) -> None:
        self.inner.ping(min(timeout_s, self.deadline_s))
