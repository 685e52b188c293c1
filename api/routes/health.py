"""Is the service up: ``/healthz`` (the process), ``/readyz`` (its dependencies), ``/health``
and ``/info`` (what the synchronous API's clients read: warm stages, pipelines, option bounds,
workers), and ``/``, a summary of the API."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.context import ContextDep
from api.schemas import ReadyBody
from shared.options import option_bounds
from shared.webhooks import WebhookEvent, retry_schedule

router = APIRouter(tags=["health"])

SERVICE_NAME = "SyncHuman job service"


@router.get("/healthz", summary="The API process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Redis and storage reachable, and at least one worker has its pipelines loaded",
    response_model=ReadyBody,
    responses={503: {"model": ReadyBody, "description": "Not ready; `checks` says why."}},
)
async def readyz(ctx: ContextDep) -> JSONResponse:
    checks: dict[str, dict] = {}
    workers: list[dict] = []
    try:
        await ctx.redis.ping()
        checks["redis"] = {"ok": True}
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        checks["redis"] = {"ok": False, "detail": type(exc).__name__}
    try:
        await run_in_threadpool(ctx.storage.ping, ctx.settings.api.storage_deadline_s)
        checks["storage"] = {"ok": True, "detail": ctx.storage.name}
    except Exception as exc:  # noqa: BLE001
        checks["storage"] = {"ok": False, "detail": f"{ctx.storage.name}: {type(exc).__name__}"}
    if checks["redis"]["ok"]:
        live = await ctx.workers(fresh=True)
        warm = [w for w in live if w.is_warm]
        workers = [w.model_dump(mode="json") for w in live]
        checks["workers"] = {"ok": bool(warm), "detail": f"{len(warm)} warm of {len(live)}"}
    else:
        checks["workers"] = {"ok": False, "detail": "redis unreachable"}
    ready = all(c["ok"] for c in checks.values())
    return JSONResponse({"ready": ready, "checks": checks, "workers": workers}, status_code=200 if ready else 503)


@router.get("/health", summary="Service status; stage1/stage2 mean 'loaded and warm on at least one worker'")
async def health(ctx: ContextDep) -> JSONResponse:
    try:
        workers = await ctx.workers()
        redis_ok = True
    except Exception:  # noqa: BLE001 - Redis down: answer, do not fail
        workers, redis_ok = [], False
    warm = [w for w in workers if w.is_warm]
    status = "ok" if redis_ok and warm else "degraded"
    body = {
        "status": status,
        "service": SERVICE_NAME,
        "stage1": bool(warm),
        "stage2": bool(warm),
        "workers": {"warm": len(warm), "total": len(workers)},
        "queue": "ok" if redis_ok else "unreachable",
    }
    return JSONResponse(body)


@router.get("/info", summary="Pipelines, their parameters (defaults and bounds), workers and their GPUs")
async def info(ctx: ContextDep) -> JSONResponse:
    workers = await ctx.workers(fresh=True)
    pipelines: dict[tuple[str, str], dict[str, Any]] = {}
    for worker in workers:
        entry = pipelines.setdefault(
            (worker.pipeline, worker.pipeline_version),
            {"name": worker.pipeline, "version": worker.pipeline_version, "devices": [], "warm_workers": 0},
        )
        if worker.device not in entry["devices"]:
            entry["devices"].append(worker.device)
        entry["warm_workers"] += int(worker.is_warm)
    parameters = option_bounds()
    settings = ctx.settings
    body = {
        "service": SERVICE_NAME,
        "pipelines": list(pipelines.values()),
        "parameters": parameters,
        "workers": [
            {
                "id": w.worker_id,
                "hostname": w.hostname,
                "pipeline": w.pipeline,
                "device": w.device,
                "gpus": w.cuda_visible_devices,
                "state": w.state,
                "current_job": w.current_job,
                "jobs_done": w.jobs_done,
            }
            for w in workers
        ],
        "limits": {
            "max_upload_bytes": settings.api.max_upload_bytes,
            "max_pixels": settings.api.max_pixels,
            "generate_timeout_s": settings.api.generate_timeout_s,
        },
        "webhooks": {
            "events": [event.value for event in WebhookEvent],
            "retry_schedule_s": retry_schedule(settings.webhooks),
            "signature": "Standard Webhooks v1 (webhook-id, webhook-timestamp, webhook-signature)",
        },
    }
    return JSONResponse(body)


@router.get("/", summary="A short summary of the API")
async def summary() -> JSONResponse:
    return JSONResponse(
        {
            "service": SERVICE_NAME,
            "description": "One photo of a person in, a textured 3D model (GLB) out.",
            "docs": "/docs",
            "ui": "/ui",
            "endpoints": {
                "GET /ui": "the web page: upload a photo, watch the stages, view and download the model",
                "POST /v1/jobs": "submit a photo; answers at once with the queued job",
                "GET /v1/jobs/{id}": "status, progress and fresh download URLs",
                "POST /v1/jobs/{id}/cancel": "cancel a queued or running job",
                "GET /v1/jobs/{id}/webhooks": "webhook delivery log",
                "POST /generate": "synchronous: submit, wait, answer the result (JSON or zip)",
                "GET /health": "service status",
                "GET /info": "pipelines, parameters, workers",
            },
        }
    )
