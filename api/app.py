"""The FastAPI application: ``uvicorn api.app:create_app --factory``."""

from __future__ import annotations

import gc
import os
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from api.body_limit import FORM_OVERHEAD_BYTES, BodySizeLimit
from api.context import ApiContext
from api.errors import install_error_handlers
from api.fast_reads import JobReadFastPath
from api.fast_submit import install_fast_submit
from api.security import authorize, install_hardening
from api import legacy, lifecycle
from api.routes import files, health, jobs
from api.ui import router as ui_router
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
        try:
            yield
        finally:
            await context.close()

    configure_logging("api")
    otel = _opentelemetry_configured()
    app = FastAPI(
        title="SyncHuman job service", version="1.0.0", description=DESCRIPTION, lifespan=lifespan,
        dependencies=[Depends(authorize)], telemetry={"tracing": otel, "metrics": otel, "logs": otel},
    )
    install_error_handlers(app)
    app.add_middleware(JobReadFastPath)
    app.add_middleware(
        BodySizeLimit,
        max_body_bytes=settings.api.max_upload_bytes + FORM_OVERHEAD_BYTES,
        image_bytes=settings.api.max_upload_bytes,
    )
    install_hardening(app, settings)
    app.include_router(jobs.router)
    app.include_router(lifecycle.router)
    app.include_router(legacy.router)
    app.include_router(health.router)
    app.include_router(files.router)
    app.include_router(ui_router)
    install_fast_submit(app)
    return app
