"""Delivery of a job's artifacts to the caller's own storage (``deliver_to``).

A submission may name, per artifact, a presigned PUT URL of the caller's
bucket: ``{"stage2/output.glb": "https://bucket.s3.../model.glb?X-Amz-...", ...}``.
Once the job succeeded, the ``webhooks`` (CPU) queue uploads each of them
(``worker.deliveries``), retrying failed attempts with backoff; each one's
outcome is on the job record (:class:`ArtifactDelivery`) and in the job as
GET returns it, without the URL.  The job's own status never depends on
them: a job whose delivery failed is still ``succeeded``, and says so there.

The URLs follow ``image_url``'s rules: http(s) only, no credentials, every
address public unless ``api.url_fetch_allow_hosts`` allows it, checked when
the job is submitted and again before each upload; redirects are not followed.
"""

from __future__ import annotations

import json
from enum import StrEnum

from pydantic import BaseModel

from shared.errors import InvalidDeliveryError
from shared.url_policy import parse_target

DELIVERABLE = (
    "stage2/output.glb",
    "stage2/output_mesh.ply",
    "stage2/thumbnail.png",
    "stage2/turntable.mp4",
    "stage2/turntable.webp",
    "stage2/output.usdz",
    "stage2/output_obj.zip",
    "results.zip",
)
"""Artifacts ``deliver_to`` may name."""
NEEDS_FORMAT = {"stage2/output.usdz": "usdz", "stage2/output_obj.zip": "obj"}
"""Artifacts made only when the job's ``formats`` ask for them."""
MAX_URL_CHARS = 8192


class DeliveryState(StrEnum):
    pending = "pending"
    """Waiting for the job to succeed, or an upload is queued or under way."""
    delivered = "delivered"
    failed = "failed"
    """Given up: refused, too large, or every attempt failed."""
    skipped = "skipped"
    """The job did not succeed: there was nothing to deliver."""


class ArtifactDelivery(BaseModel):
    """The outcome so far of one artifact's upload (on the job record and in its public view)."""

    state: DeliveryState = DeliveryState.pending
    attempts: int = 0
    status_code: int | None = None
    """The last answer's HTTP status."""
    error: str | None = None
    """Why the last attempt failed (never the URL)."""
    bytes: int | None = None
    finished_at: float | None = None
    next_attempt_at: float | None = None


def parse_deliver_to(raw: str | dict | None, formats: tuple[str, ...]) -> dict[str, str]:
    """The ``deliver_to`` field (a form's JSON text, or a JSON body's object) as artifact name -> URL;
    {} when absent.

    Raises ``InvalidDeliveryError`` for anything else, and ``UrlRefusedError``
    for a URL that is not plain http(s).  Host resolution is the caller's
    (``url_policy.resolve_allowed``).
    """
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    try:
        value = raw if isinstance(raw, dict) else json.loads(raw)
    except ValueError:
        raise InvalidDeliveryError("deliver_to must be a JSON object of artifact name -> presigned PUT URL") from None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidDeliveryError("deliver_to must be a JSON object of artifact name -> presigned PUT URL")
    for name, url in value.items():
        if name not in DELIVERABLE:
            raise InvalidDeliveryError(f"deliver_to names {name!r}; deliverable: {', '.join(DELIVERABLE)}")
        if name in NEEDS_FORMAT and NEEDS_FORMAT[name] not in formats:
            raise InvalidDeliveryError(f"{name} is made only with the option formats including {NEEDS_FORMAT[name]!r}")
        if len(url) > MAX_URL_CHARS:
            raise InvalidDeliveryError(f"the URL for {name} is longer than {MAX_URL_CHARS} characters")
        parse_target(url)
    return value
