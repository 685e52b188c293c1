"""Webhook signatures in the Standard Webhooks format (https://www.standardwebhooks.com).

Every webhook call carries three headers:

``webhook-id``
    the message id (the same on every retry of one message; receivers use it to
    drop duplicates);
``webhook-timestamp``
    Unix seconds when this attempt was signed;
``webhook-signature``
    ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, possibly several
    space-separated signatures while a secret is being rotated.

The secret is written ``whsec_<base64 key>``; the HMAC key is the decoded
bytes after the prefix.  A receiver verifies a call with :func:`verify`
(re-exported by the client as ``verify_webhook``): recompute the HMAC over the
raw body exactly as received, compare in constant time, and refuse timestamps
more than five minutes away from its clock (replays).

Besides the standard library it needs only ``shared.errors`` (itself plain Python).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

from shared.errors import WebhookSignatureError

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_S = 5 * 60
"""Largest accepted distance between the timestamp header and the receiver's clock."""


def generate_secret(num_bytes: int = 24) -> str:
    """A fresh ``whsec_…`` secret (``num_bytes`` random bytes, base64)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(num_bytes)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key a ``whsec_…`` secret stands for."""
    encoded = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except ValueError as exc:
        raise WebhookSignatureError("the webhook secret is not base64 after its whsec_ prefix") from exc
    if not key:
        raise WebhookSignatureError("the webhook secret is empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value of one message: ``v1,<base64 HMAC-SHA256>``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def signature_headers(secret: str, msg_id: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """The three headers of one delivery attempt, signed now unless ``timestamp`` is given."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sign(secret, msg_id, ts, body)}


def verify(
    headers: Mapping[str, str],
    body: bytes | str,
    secret: str,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> None:
    """Return if ``headers`` sign ``body`` with ``secret``; raise :class:`WebhookSignatureError` if not.

    ``headers`` may be any mapping (header names are matched case-insensitively);
    ``body`` must be the raw request body, byte for byte.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id = lower["webhook-id"]
        raw_timestamp = lower["webhook-timestamp"]
        signatures = lower["webhook-signature"]
    except KeyError as exc:
        raise WebhookSignatureError(f"missing header {exc.args[0]}") from None
    try:
        timestamp = int(raw_timestamp)
    except ValueError:
        raise WebhookSignatureError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise WebhookSignatureError("webhook-timestamp is too far from the current time")
    payload = body.encode() if isinstance(body, str) else bytes(body)
    expected = sign(secret, msg_id, timestamp, payload).split(",", 1)[1]
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == SIGNATURE_VERSION and hmac.compare_digest(value.encode(), expected.encode()):
            return
    raise WebhookSignatureError("no webhook-signature matches the body")
