"""``POST /v1/jobs`` with a form body, without FastAPI's per-request machinery.

Submissions are the API's costliest requests after the photo check itself,
and FastAPI's work around the handler (dependency solving, the per-field
form extraction, its exit stack and response wrapping) was about a sixth of
a submission's CPU time.  This plain Starlette route sits first in the
router and does the same steps directly:

1. :func:`api.security.authorize`, the dependency every ``/v1`` route has;
2. the form parsed by Starlette with its default limits (FastAPI's too);
3. the fields validated by the same model the documented route declares
   (:class:`api.routes.jobs.SubmitForm`);
4. the same handler, :func:`api.routes.jobs.submit_job`.

Errors are raised, not answered here, so the application's exception
handlers give every answer exactly as for any other route.  Requests whose
body is not a form (JSON, no content type, ...) do not match this route and
reach the FastAPI route, which also documents the endpoint in OpenAPI.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Scope

from api.idempotency import HEADER as IDEMPOTENCY_HEADER
from api.routes.jobs import SubmitForm, submit_job
from api.security import authorize

PATH = "/v1/jobs"
FORM_TYPES = (b"multipart/form-data", b"application/x-www-form-urlencoded")


def _has_form_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower() in FORM_TYPES
    return False


class FormSubmitRoute(Route):
    """``POST /v1/jobs``, matched only when the body is a form."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is Match.FULL and not _has_form_body(scope):
            return Match.NONE, {}
        return match, child_scope


async def submit_form(request: Request) -> Response:
    ctx = request.app.state.context
    await authorize(request, ctx)
    async with request.form() as form:
        fields = SubmitForm.from_form(form)
        return await submit_job(request, ctx, fields, request.headers.get(IDEMPOTENCY_HEADER))


def install_fast_submit(app: FastAPI) -> None:
    """Put the form route ahead of every other route (the FastAPI route stays behind it)."""
    app.router.routes.insert(0, FormSubmitRoute(PATH, submit_form, methods=["POST"], include_in_schema=False))
