"""A webhook receiver on loopback that the tests can take down, bring back and script.

It records every call (path, headers, raw body) and answers each path with the
status set for it (204 by default).  ``stop()`` closes the listening socket,
so calls fail with "connection refused" exactly as for a receiver that is
down; ``start()`` listens again on the same port.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from client.stack import free_port


@dataclass(frozen=True)
class Call:
    path: str
    headers: dict[str, str]
    body: bytes


class WebhookReceiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.calls: list[Call] = []
        self.statuses: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def calls_to(self, path: str) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.path == path]

    def forget(self, path: str) -> None:
        """Drop the calls recorded to ``path`` (before a new job reuses it)."""
        with self._lock:
            self.calls = [call for call in self.calls if call.path != path]

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.calls.append(Call(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    status = receiver.statuses.get(self.path, 204)
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", receiver.url("/redirected"))
                self.send_header("Content-Length", "0")
                self.end_headers()

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
