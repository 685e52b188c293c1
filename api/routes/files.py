"""Downloads of the local storage backend, under URLs the API signed itself."""

from __future__ import annotations

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from api.context import ContextDep
from api.schemas import ErrorBody
from shared.errors import JobNotFoundError, UrlSignatureError
from shared.storage.base import content_type_for

router = APIRouter(tags=["files"])


@router.get(
    "/files/{key:path}",
    summary="Download an artifact (local storage backend only)",
    responses={403: {"model": ErrorBody}, 404: {"model": ErrorBody}},
)
async def download_file(ctx: ContextDep, key: str, expires: int = Query(...), signature: str = Query(...)) -> FileResponse:
    storage = ctx.storage
    if storage.name != "local":
        raise JobNotFoundError("files are served by the object store, not by the API")
    if not storage.verify(key, expires, signature):
        raise UrlSignatureError("the download URL is invalid or has expired")
    try:
        path = storage.path_of(key)
    except KeyError:
        raise JobNotFoundError("no such file") from None
    if not path.is_file():
        raise JobNotFoundError("no such file")
    return FileResponse(path, media_type=content_type_for(key), filename=path.name)
