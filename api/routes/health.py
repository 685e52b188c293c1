"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.context import ContextDep
from api.schemas import ReadyBody

router = APIRouter(tags=["health"])


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
