"""A hostile client for the connection tests: opens COUNT connections, sends half a request on each, holds.

``python -m tests.api.half_open_client --port P --count 10000 --hold-s 15``

Bounded and self-stopping: exactly ``--count`` sockets (its open-files limit is
raised to fit), held ``--hold-s`` seconds, everything closed and the process gone
within ``--hold-s`` + ``--connect-s``.  Connections come from ``--source``
(another loopback address), so they use none of 127.0.0.1's local ports.
Prints one JSON line: how many connected, sent their half request, and were
closed by the server while held.
"""

from __future__ import annotations

import argparse
import json
import resource
import selectors
import socket
import time

IP_BIND_ADDRESS_NO_PORT = 24  # Linux: pick the local port at connect(), by the whole 4-tuple
HALF_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: api\r\nX-Slow: "  # the head never ends


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--hold-s", type=float, required=True)
    parser.add_argument("--connect-s", type=float, default=20.0)
    parser.add_argument("--source", default="127.0.0.2")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.count + 64), hard))

    selector = selectors.DefaultSelector()
    sockets = []
    for _ in range(args.count):
        s = socket.socket()
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        s.bind((args.source, 0))
        s.connect_ex(("127.0.0.1", args.port))
        selector.register(s, selectors.EVENT_WRITE)
        sockets.append(s)

    sent = 0
    deadline = time.monotonic() + args.connect_s
    while sent < len(sockets) and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.5):
            s = key.fileobj
            selector.unregister(s)
            try:
                s.send(HALF_REQUEST)
                sent += 1
            except OSError:
                pass  # refused or reset while connecting
    print(json.dumps({"event": "sent", "sent": sent}), flush=True)

    time.sleep(args.hold_s)
    closed_by_server = 0
    for s in sockets:
        try:
            closed_by_server += s.recv(1024) == b""
        except BlockingIOError:
            pass  # still open: nothing to read
        except OSError:
            closed_by_server += 1
        s.close()
    print(json.dumps({"event": "done", "sent": sent, "closed_by_server": closed_by_server}), flush=True)


if __name__ == "__main__":
    main()
