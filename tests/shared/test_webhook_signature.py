"""Standard Webhooks signatures: ours must agree with the reference library both ways."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from shared.errors import WebhookSignatureError
from shared.webhook_signature import generate_secret, secret_key, sign, signature_headers, verify

BODY = b'{"type":"job.completed","data":{"id":"abc","status":"succeeded"}}'


def test_generated_secret_is_whsec_with_24_random_bytes() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(secret_key(secret)) == 24
    assert generate_secret() != secret


def test_reference_library_accepts_our_signature() -> None:
    secret = generate_secret()
    headers = signature_headers(secret, "msg_1", BODY)
    assert Webhook(secret).verify(BODY, headers) == {"type": "job.completed", "data": {"id": "abc", "status": "succeeded"}}


def test_we_accept_the_reference_library_signature() -> None:
    secret = generate_secret()
    now = datetime.now(tz=UTC).replace(microsecond=0)
    signature = Webhook(secret).sign("msg_2", now, BODY.decode())
    headers = {"Webhook-Id": "msg_2", "Webhook-Timestamp": str(int(now.timestamp())), "Webhook-Signature": signature}
    verify(headers, BODY, secret)


def test_signature_is_base64_hmac_sha256_of_id_timestamp_body() -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    value = sign(secret, "msg_3", 1700000000, b"{}")
    version, digest = value.split(",")
    assert version == "v1"
    assert len(base64.b64decode(digest)) == 32
    # The same inputs signed with another id or timestamp give another signature.
    assert sign(secret, "msg_4", 1700000000, b"{}") != value
    assert sign(secret, "msg_3", 1700000001, b"{}") != value


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, b: (h, b + b" "),
        lambda h, b: ({**h, "webhook-id": "msg_other"}, b),
        lambda h, b: ({**h, "webhook-timestamp": str(int(h["webhook-timestamp"]) + 1)}, b),
        lambda h, b: ({**h, "webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode()}, b),
        lambda h, b: ({**h, "webhook-signature": h["webhook-signature"].replace("v1,", "v2,")}, b),
        lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b),
    ],
    ids=["body", "id", "timestamp", "signature", "version", "missing-header"],
)
def test_tampered_calls_are_refused_by_us_and_the_reference(tamper) -> None:
    secret = generate_secret()
    headers, body = tamper(signature_headers(secret, "msg_5", BODY), BODY)
    with pytest.raises(WebhookSignatureError):
        verify(headers, body, secret)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)


def test_wrong_secret_is_refused() -> None:
    headers = signature_headers(generate_secret(), "msg_6", BODY)
    with pytest.raises(WebhookSignatureError, match="no webhook-signature matches"):
        verify(headers, BODY, generate_secret())


def test_old_and_future_timestamps_are_refused_as_replays() -> None:
    secret = generate_secret()
    now = time.time()
    old = signature_headers(secret, "msg_7", BODY, timestamp=int(now) - 301)
    future = signature_headers(secret, "msg_7", BODY, timestamp=int(now) + 301)
    for headers in (old, future):
        with pytest.raises(WebhookSignatureError, match="too far"):
            verify(headers, BODY, secret, now=now)
    verify(signature_headers(secret, "msg_7", BODY, timestamp=int(now) - 299), BODY, secret, now=now)


def test_any_of_several_signatures_may_match_during_secret_rotation() -> None:
    old_secret, new_secret = generate_secret(), generate_secret()
    headers = signature_headers(new_secret, "msg_8", BODY)
    ts = int(headers["webhook-timestamp"])
    headers["webhook-signature"] = f"{sign(old_secret, 'msg_8', ts, BODY)} {headers['webhook-signature']}"
    verify(headers, BODY, old_secret)
    verify(headers, BODY, new_secret)


def test_secret_without_padding_or_prefix_decodes_like_the_reference() -> None:
    raw = b"0123456789abcdefghij!"  # 21 bytes: base64 needs padding
    unpadded = base64.b64encode(raw).decode().rstrip("=")
    assert secret_key("whsec_" + unpadded) == raw
    assert secret_key(unpadded) == raw
    headers = signature_headers("whsec_" + unpadded, "msg_9", BODY)
    Webhook("whsec_" + unpadded).verify(BODY, headers)
