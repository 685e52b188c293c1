"""One webhook call for a finished job (the ``webhooks.deliver`` task's body).

The job's ``webhook_url`` is checked again by ``shared.url_policy`` (DNS may
have changed since submission) and the POST goes to the address that was
checked, with the original ``Host`` header and TLS server name, redirects not
followed.  The body is the job as ``GET /v1/jobs/{id}`` returns it; the header
``X-SyncHuman-Signature: sha256=<hex HMAC-SHA256 of the body>`` is keyed with
``worker.webhook_secret``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import TYPE_CHECKING

import httpx

from shared.job_view import job_body
from shared.url_policy import resolve_allowed

if TYPE_CHECKING:
    from worker.runtime import WorkerRuntime


class WebhookDeliveryError(Exception):
    """The receiver could not be reached or did not answer 2xx; worth retrying."""


def deliver_webhook(runtime: WorkerRuntime, job_id: str) -> int | None:
    """POST job ``job_id`` to its webhook; returns the receiver's status code (None: no webhook)."""
    record = runtime.store.get(job_id)
    if not record.webhook_url:
        return None
    settings = runtime.settings
    target, address = resolve_allowed(record.webhook_url, settings.api.url_fetch_allow_hosts)
    body = json.dumps(job_body(record, runtime.storage, settings.storage.url_ttl_s)).encode()
    digest = hmac.new(settings.worker.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
    url = httpx.URL(record.webhook_url)
    headers = {
        "content-type": "application/json",
        "host": url.netloc.decode("ascii"),
        "x-synchuman-signature": f"sha256={digest}",
    }
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    try:
        with httpx.Client(timeout=settings.worker.webhook_timeout_s, follow_redirects=False, trust_env=False) as client:
            request = client.build_request(
                "POST", url.copy_with(host=str(address)), content=body, headers=headers, extensions=extensions
            )
            response = client.send(request)
    except httpx.HTTPError as exc:
        raise WebhookDeliveryError(f"{type(exc).__name__}: {exc}") from exc
    if not 200 <= response.status_code < 300:
        raise WebhookDeliveryError(f"the receiver answered HTTP {response.status_code}")
    return response.status_code
