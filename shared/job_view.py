"""The public JSON view of a job: what ``GET /v1/jobs/{id}`` answers and what webhooks carry.

One function builds it for both, so a webhook's payload is exactly the job as
GET returns it, with download URLs minted at the moment it is built (a retried
webhook carries fresh URLs, not the ones of its first attempt).
"""

from __future__ import annotations

from typing import Any

from shared.deliveries import DeliveryState
from shared.jobs import JobRecord, JobStatus
from shared.storage import Storage
from shared.storage.base import content_type_for


def job_links(job_id: str) -> dict[str, str]:
    base = f"/v1/jobs/{job_id}"
    return {"self": base, "result": f"{base}/result", "cancel": f"{base}/cancel"}


def job_body(
    record: JobRecord,
    storage: Storage,
    url_ttl_s: int,
    *,
    queue_position: int | None = None,
    eta_s: float | None = None,
) -> dict[str, Any]:
    """The job as clients see it: the stage-1 URLs while it runs stage 2, every URL once it succeeded."""
    outputs = {}
    if record.status in (JobStatus.running, JobStatus.succeeded):
        for name, key in record.outputs.items():
            link = storage.download_url(key, url_ttl_s)
            outputs[name] = {"url": link.url, "expires_at": link.expires_at, "media_type": content_type_for(key)}
    return {
        "id": record.id,
        "status": record.status.value,
        "stage": record.stage.value if record.stage else None,
        "progress": record.progress,
        "queue_position": queue_position,
        "eta_s": eta_s,
        "created_at": record.created_at,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "attempts": record.attempts,
        "options": record.options,
        "pipeline": record.pipeline,
        "timings": record.timings,
        "stage_started_at": record.stage_started_at,
        "error": record.error.model_dump() if record.error else None,
        "outputs": outputs,
        "deliveries": _deliveries(record),
        "links": job_links(record.id),
    }


def _deliveries(record: JobRecord) -> dict[str, Any]:
    """Each ``deliver_to`` upload's outcome (without its URL); a job that did not succeed delivers nothing."""
    out = {}
    for name, delivery in record.deliveries.items():
        if record.status in (JobStatus.failed, JobStatus.canceled) and delivery.state is DeliveryState.pending:
            delivery = delivery.model_copy(update={"state": DeliveryState.skipped})
        out[name] = delivery.model_dump(mode="json")
    return out
