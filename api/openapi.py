"""The OpenAPI schema's additions: the bearer scheme, and the 401/429/503 answers that the
app-wide dependency and admission give on every route they guard."""

from __future__ import annotations

from fastapi import FastAPI

from api.auth import is_guarded
from shared.settings import Settings


SUBMIT_PATHS = frozenset({"/v1/jobs", "/generate"})
"""Operations that create jobs, hence answer 429/503 under the limits."""


def document_security(app: FastAPI, settings: Settings) -> None:
    """Add the answers this module can give (401, 429, 503) and the bearer scheme to the OpenAPI schema."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        if settings.auth.enabled:
            schema.setdefault("components", {}).setdefault("securitySchemes", {})["apiKey"] = {
                "type": "http", "scheme": "bearer", "description": "An API key from `synchuman keys create`."
            }
        for path, operations in schema.get("paths", {}).items():
            guarded = is_guarded(path)
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                if settings.auth.enabled and guarded:
                    operation["security"] = [{"apiKey": []}]
                    responses.setdefault("401", {"description": "`unauthorized`: no valid API key.", "content": error})
                if path in SUBMIT_PATHS and method == "post":
                    responses.setdefault("429", {
                        "description": "`rate_limited` or `too_many_jobs_in_flight`; see `Retry-After`.",
                        "content": error,
                    })
                    responses.setdefault("503", {
                        "description": "`queue_full` or `service_unavailable`; see `Retry-After`.", "content": error
                    })
        app.openapi_schema = schema
        return schema

    app.openapi = openapi
