"""The FastAPI application: ``uvicorn api.app:create_app --factory``.

This module only assembles: the per-process context and the dead-worker
recovery loop (lifespan), the app-wide authentication dependency
(``api.auth``), the exception handlers (``api.errors``), the middleware
(``api.middleware``), the OpenAPI additions (``api.openapi``) and one router per
resource (``api.routes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from api.auth import authenticate
from api.context import ApiContext
from api.errors import install_error_handlers
from api.middleware import install_middleware
from api.openapi import document_security
from api.recovery import run_recovery
from api.routes import files, health, jobs, metrics, sync_api, ui
from shared.deployment_secrets import require_deployment_secrets
from shared.settings import Settings, get_settings
from shared.structured_logging import configure_logging

DESCRIPTION = """
One photo of a person in, a textured 3D model (GLB) out, through a job queue.

Submit with `POST /v1/jobs`, poll `GET /v1/jobs/{id}` (status, stage, progress,
ETA, and fresh download URLs once it succeeded), or follow
`GET /v1/jobs/{id}/result` to the GLB. Every error answer has the body
`{"error": {"code", "message", "retryable"}}` with a stable `code`.
"""


def _opentelemetry_configured() -> bool:
    """True when the operator set up OpenTelemetry through the environment (``OTEL_*``).

    FastAPI's built-in OpenTelemetry instrumentation otherwise only asks, on
    every request, whether a provider was configured; the service's own
    numbers are Prometheus metrics (``/metrics``) and JSON logs.
    """
    return os.environ.get("FASTAPI_OTEL_AUTO_CONFIGURE", "").lower() == "true" or any(
        name.startswith("OTEL_") for name in os.environ
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    require_deployment_secrets(settings)  # before anything listens: no public secret in a deployment

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        context = ApiContext.build(settings)
        if settings.storage.backend == "s3":
            context.storage.ensure_bucket()
        app.state.context = context
        # Everything loaded so far (FastAPI, pydantic, Celery, boto3...) lives as long as the
        # process: move it out of the garbage collector's generations, so full collections
        # do not walk it while requests wait (tens of milliseconds per collection otherwise).
        gc.collect()
        gc.freeze()
        recovery = asyncio.create_task(run_recovery(context), name="dead-worker recovery")
        try:
            yield
        finally:
            recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recovery
            await context.close()

    configure_logging("api")
    otel = _opentelemetry_configured()
    app = FastAPI(
        title="SyncHuman job service", version="1.0.0", description=DESCRIPTION, lifespan=lifespan,
        dependencies=[Depends(authenticate)], telemetry={"tracing": otel, "metrics": otel, "logs": otel},
    )
    install_error_handlers(app)
    install_middleware(app, settings)
    for routes in (jobs, sync_api, health, files, metrics, ui):
        app.include_router(routes.router)
    document_security(app, settings)
    return app
