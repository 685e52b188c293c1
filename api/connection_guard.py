"""Connection limits of the API process, where uvicorn has none of its own.

uvicorn closes idle keep-alive connections (``--timeout-keep-alive``) but puts
no limit on how long a client may take to send a request, nor on how many
connections it accepts: a few thousand half-sent requests hold file
descriptors until the process can accept no one, ``/healthz`` included.  This
protocol (uvicorn's httptools protocol, with the limits below) closes the gap::

    uvicorn api.app:create_app --factory --http api.connection_guard:GuardedHttpProtocol

* **header timeout** (``api.header_timeout_s``): a request's line and headers
  must arrive within this time of the connection opening or of their first
  byte; otherwise the connection is closed;
* **header size** (``MAX_HEADER_BYTES``): larger request heads are answered 400;
* **body timeout** (``api.body_timeout_s``): while a body is read, the client
  must send something at least this often (the pause is not counted while the
  server itself stops reading);
* **connection cap** (``api.max_connections``, and never more than the
  open-files limit allows, which the process raises to its hard limit): at the
  cap, a new connection takes the place of the one that has waited longest
  without a request in progress (idle, or still sending its headers); when
  every connection is busy with a request, the new one is closed at once.

So a client holding thousands of half-sent requests loses its oldest ones as
others connect, and all of them after the header timeout; clients that send a
request when they connect are served.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import resource

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shared.settings import ApiSettings, get_settings

MAX_HEADER_BYTES = 64 * 1024
"""Largest request line plus headers accepted."""
RESERVED_FILES = 256
"""Descriptors kept for everything but client connections (Redis and S3 pools, logs, files)."""

log = logging.getLogger("synchuman.connections")


def raise_open_files_limit() -> int:
    """Raise this process's soft ``RLIMIT_NOFILE`` to its hard limit; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # keep the current limit; the cap below follows it
    return soft


class ConnectionGuard:
    """The process's open connections, and which of them may give way to a new one."""

    def __init__(self, settings: ApiSettings, open_files: int) -> None:
        self.max_connections = max(1, min(settings.max_connections, open_files - RESERVED_FILES))
        self.header_timeout_s = settings.header_timeout_s
        self.body_timeout_s = settings.body_timeout_s
        self.open: set[GuardedHttpProtocol] = set()
        self.waiting: dict[GuardedHttpProtocol, None] = {}
        """Connections without a request in progress, longest waiting first (insertion order)."""

    def admit(self, connection: GuardedHttpProtocol) -> bool:
        """Count a new connection; False when it must be closed (the cap is reached and all are busy)."""
        self.open.add(connection)
        while len(self.open) > self.max_connections and self.waiting:
            oldest = next(iter(self.waiting))
            self.forget(oldest)
            oldest.close("connection cap reached; closed the one waiting longest")
        if len(self.open) > self.max_connections:
            self.forget(connection)
            return False
        return True

    def idle(self, connection: GuardedHttpProtocol) -> None:
        """The connection has no request in progress: it goes to the back of the eviction line."""
        self.waiting.pop(connection, None)
        self.waiting[connection] = None

    def busy(self, connection: GuardedHttpProtocol) -> None:
        self.waiting.pop(connection, None)

    def forget(self, connection: GuardedHttpProtocol) -> None:
        self.open.discard(connection)
        self.waiting.pop(connection, None)


@functools.cache
def process_guard() -> ConnectionGuard:
    """The one guard of this process, built at its first connection."""
    guard = ConnectionGuard(get_settings().api, raise_open_files_limit())
    log.info("connection limits", extra={"max_connections": guard.max_connections,
                                          "header_timeout_s": guard.header_timeout_s,
                                          "body_timeout_s": guard.body_timeout_s})
    return guard


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header timeout, a body timeout and the connection cap."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.guard = process_guard()
        self._deadline: asyncio.TimerHandle | None = None
        self._reading_body = False
        self._head_bytes = 0
        """Bytes of the current request's line and headers."""

    # -- timers ---------------------------------------------------------------------------
    def _arm(self, seconds: float, on_expiry) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, on_expiry)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_too_slow(self) -> None:
        self.close("request headers not received in time")

    def _body_too_slow(self) -> None:
        if self.flow.read_paused:  # the server stopped reading, not the client: wait on
            self._arm(self.guard.body_timeout_s, self._body_too_slow)
            return
        self.close("request body stalled")

    def close(self, reason: str) -> None:
        self._disarm()
        if not self.transport.is_closing():
            log.debug(reason, extra={"client": self.client})
            self.transport.close()

    # -- asyncio.Protocol and parser callbacks ---------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.guard.admit(self):
            self.close("connection cap reached and every connection busy")
            return
        self.guard.idle(self)
        self._arm(self.guard.header_timeout_s, self._headers_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.guard.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._reading_body:
            self._arm(self.guard.body_timeout_s, self._body_too_slow)
        super().data_received(data)

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEADER_BYTES:
            raise ValueError("request headers too large")  # the parser's caller answers 400 and closes

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value))
        super().on_header(name, value)

    def on_message_begin(self) -> None:
        self._head_bytes = 0
        super().on_message_begin()
        if self._deadline is None:  # the first byte of a request on a kept-alive connection
            self._arm(self.guard.header_timeout_s, self._headers_too_slow)

    def on_headers_complete(self) -> None:
        self.guard.busy(self)
        self._reading_body = True
        self._arm(self.guard.body_timeout_s, self._body_too_slow)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._reading_body = False
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline and not self._reading_body:
            self.guard.idle(self)  # uvicorn's keep-alive timer closes it if nothing follows
