"""The one table from service errors to HTTP statuses, the one error body, and every exception handler.

Every error answer has the body ``{"error": {"code", "message", "retryable"}}``.
Besides the service's own errors, two failures no route expects get an answer
here: Redis unreachable (503 ``service_unavailable`` with ``Retry-After``) and
anything else (a bare 500 with no traceback, path or secret; the details go to
the log).
"""

from __future__ import annotations

import logging
import math

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared import errors as e

log = logging.getLogger("synchuman.api")

REDIS_DOWN_RETRY_S = 5

STATUS_BY_ERROR: list[tuple[type[e.ServiceError], int]] = [
    (e.PayloadTooLargeError, 413),
    (e.UnsupportedFormatError, 415),
    (e.UnsupportedMediaTypeError, 415),
    (e.MissingImageError, 400),
    (e.MultipleImagesError, 400),
    (e.UrlRefusedError, 422),
    (e.UrlFetchError, 422),
    (e.InvalidInputError, 422),
    (e.JobNotFoundError, 404),
    (e.UrlSignatureError, 403),
    (e.JobNotReadyError, 409),
    (e.IllegalTransitionError, 409),
    (e.JobNotCancelableError, 409),
    (e.NoWebhookError, 409),
    (e.WaitTimeoutError, 504),
    (e.UnauthorizedError, 401),
    (e.RateLimitedError, 429),
    (e.TooManyJobsInFlightError, 429),
    (e.QueueFullError, 503),
    (e.RequestInProgressError, 503),
    (e.StorageUnavailableError, 503),
    (e.ServiceUnavailableError, 503),
    (e.StorageError, 503),
]
"""First matching class wins (subclasses before their bases)."""


def status_for(error: e.ServiceError) -> int:
    for cls, status in STATUS_BY_ERROR:
        if isinstance(error, cls):
            return status
    return 500


def error_body(code: str, message: str, retryable: bool = False) -> dict:
    return {"error": {"code": code, "message": message, "retryable": retryable}}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(e.ServiceError)
    async def service_error(_: Request, exc: e.ServiceError) -> JSONResponse:
        headers = {}
        if isinstance(exc, e.RetryLaterError):
            headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
        elif isinstance(exc, e.UnauthorizedError):
            headers["WWW-Authenticate"] = "Bearer"
        return JSONResponse(
            error_body(exc.code, exc.message, exc.retryable), status_code=status_for(exc), headers=headers or None
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}" for err in exc.errors()
        )
        return JSONResponse(error_body("invalid_request", details or "invalid request"), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # a body that could not be parsed (malformed JSON or multipart)
            return JSONResponse(error_body("invalid_request", str(exc.detail)), status_code=422)
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        code = codes.get(exc.status_code, "http_error")
        # Starlette's own headers stay (``Allow`` on 405 answers).
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(redis.RedisError)
    async def redis_unavailable(_: Request, exc: redis.RedisError) -> JSONResponse:
        log.warning("redis unavailable", extra={"error": type(exc).__name__})
        return JSONResponse(
            error_body("service_unavailable", "the job store cannot be reached; try again", retryable=True),
            status_code=503, headers={"Retry-After": str(REDIS_DOWN_RETRY_S)},
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        return JSONResponse(error_body("internal_error", "internal error", retryable=True), status_code=500)
