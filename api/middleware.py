"""The middleware every request passes: request ids and access logs, the body-size cap, CORS.

* :class:`RequestIdMiddleware`: one id per HTTP request, taken from
  ``X-Request-ID`` if sane, else new; echoed back and put on every log line.
* :class:`BodySizeLimit`: refuses request bodies over the byte cap before they
  are parsed or spooled to disk.  Starlette reads a whole multipart upload (to
  a temporary file) before a route sees it, so the cap is enforced here: a
  declared ``Content-Length`` over the limit is answered 413 at once; a chunked
  body is counted as it arrives and cut off with 413 as soon as it passes it.
* CORS: an allowlist of origins, off unless ``cors.allow_origins`` lists some.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

import orjson
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_body
from api.fast_reads import JobReadFastPath
from shared.settings import Settings
from shared.structured_logging import request_id_var

log = logging.getLogger("synchuman.api")

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_KEY = REQUEST_ID_HEADER.lower().encode()
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def install_middleware(app: FastAPI, settings: Settings) -> None:
    """Add the middleware, outermost last: request id, CORS, the body cap, then the job-read fast path."""
    if settings.api.fast_job_reads:
        app.add_middleware(JobReadFastPath)
    app.add_middleware(
        BodySizeLimit,
        max_body_bytes=settings.api.max_upload_bytes + FORM_OVERHEAD_BYTES,
        image_bytes=settings.api.max_upload_bytes,
    )
    if settings.cors.allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors.allow_origins),
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", REQUEST_ID_HEADER],
            expose_headers=["Location", "Retry-After", REQUEST_ID_HEADER],
            max_age=600,
        )
    app.add_middleware(RequestIdMiddleware)


class RequestIdMiddleware:
    """One id per HTTP request: taken from ``X-Request-ID`` if sane, else new; echoed back and logged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope.get("headers") or ():
            if name == _REQUEST_ID_KEY:
                incoming = value.decode("latin-1")
                break
        request_id = incoming if incoming and _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((_REQUEST_ID_KEY, request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "request",
                    extra={
                        "method": scope.get("method"),
                        "path": scope.get("path"),
                        "status": status,
                        "ms": round((time.perf_counter() - started) * 1000, 1),
                    },
                )
            request_id_var.reset(token)


FORM_OVERHEAD_BYTES = 256 * 1024
"""Room for multipart boundaries and the small form fields beside the image."""


class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_body_bytes: int, image_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.image_bytes = image_bytes

    async def _refuse(self, send: Send) -> None:
        body = orjson.dumps(error_body(
            "payload_too_large", f"the request is larger than the limit (images up to {self.image_bytes} bytes)"
        ))
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                await self._refuse(send)
                return

        received = 0
        exceeded = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    exceeded = True
                    raise BodyTooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # whatever the app answers to a cut-off body, the answer is 413
            started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except BodyTooLarge:
            pass
        if exceeded and not started:
            await self._refuse(send)
