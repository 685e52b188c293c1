"""The API's connection limits one by one, on a real uvicorn (``api.connection_guard``).

The 20,000-connection attack is in ``test_connection_hygiene``; here each limit
is shown with a handful of raw sockets and small settings.
"""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.support.fault_stack import Stack

pytestmark = pytest.mark.slow  # starts servers and workers as real processes

CAP = 40
HEADER_TIMEOUT_S = 2
BODY_TIMEOUT_S = 2


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_server):
    stack = Stack(tmp_path_factory.mktemp("guard"), redis_server,
                  SYNCHUMAN_API__MAX_CONNECTIONS=str(CAP),
                  SYNCHUMAN_API__HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S),
                  SYNCHUMAN_API__BODY_TIMEOUT_S=str(BODY_TIMEOUT_S)).start_api()
    yield stack
    stack.stop()


def connect(stack: Stack, first_bytes: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", stack.port), timeout=10)
    if first_bytes:
        sock.sendall(first_bytes)
    return sock


def closed_by_server(sock: socket.socket, within_s: float) -> float | None:
    """Seconds until the server closed ``sock`` (read EOF or reset), or None if it stayed open."""
    started = time.monotonic()
    sock.settimeout(within_s)
    try:
        while data := sock.recv(65536):
            if b"\r\n\r\n" in data and not data.startswith(b"HTTP/1.1 4"):
                return None  # an ordinary answer: not closed for the reason under test
        return time.monotonic() - started
    except ConnectionResetError:
        return time.monotonic() - started
    except TimeoutError:
        return None
    finally:
        sock.close()


def test_request_headers_must_arrive_within_the_header_timeout(stack):
    silent = connect(stack)  # connects and never sends a byte
    slow = connect(stack, b"GET /healthz HTTP/1.1\r\nHost: api\r\n")  # never finishes its head
    for sock in (silent, slow):
        waited = closed_by_server(sock, HEADER_TIMEOUT_S + 5)
        assert waited is not None and waited <= HEADER_TIMEOUT_S + 1


def test_a_stalled_body_is_cut_off_after_the_body_timeout(stack):
    sock = connect(stack, b"POST /v1/jobs HTTP/1.1\r\nHost: api\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                          b"Content-Length: 1000\r\n\r\n--b\r\n")
    waited = closed_by_server(sock, BODY_TIMEOUT_S + 10)
    assert waited is not None and waited <= BODY_TIMEOUT_S + 2


def test_oversized_request_heads_are_refused(stack):
    sock = connect(stack, b"GET /healthz HTTP/1.1\r\nHost: api\r\n" + b"X-Pad: " + b"a" * 70_000 + b"\r\n\r\n")
    sock.settimeout(10)
    assert sock.recv(64).startswith(b"HTTP/1.1 400")
    sock.close()


def is_closed(sock: socket.socket) -> bool:
    """Whether the server has closed ``sock`` (checked without waiting)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def test_at_the_cap_a_new_client_replaces_the_longest_waiting_connection(stack):
    waiting = [connect(stack, b"GET /healthz HTTP/1.1\r\n") for _ in range(CAP)]  # the cap, all half-sent
    time.sleep(0.3)
    newcomers = [connect(stack, b"GET /healthz HTTP/1.1\r\n") for _ in range(5)]
    answer = httpx.get(f"{stack.api_url}/healthz", timeout=5)  # a whole request is served at once
    assert answer.status_code == 200
    time.sleep(0.3)
    # Each of the six newcomers took the place of the connection waiting longest.
    assert [is_closed(sock) for sock in waiting] == [True] * 6 + [False] * (CAP - 6)
    assert not any(is_closed(sock) for sock in newcomers)
    for sock in waiting + newcomers:
        sock.close()
