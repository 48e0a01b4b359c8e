"""Every error the runtime answers is JSON ``{"error": {"message", "type", "code"}}``."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from aibrix.errors import AibrixError

log = logging.getLogger("aibrix.runtime")


class APIError(AibrixError):
    """An error raised by a route; becomes an error body with ``status``."""

    def __init__(self, status: int, message: str, type: str) -> None:
        super().__init__(message, status=status, type=type)


def error_response(status: int, message: str, type: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type, "code": status}}, status_code=status)


async def _aibrix_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, AibrixError):
        return await _unexpected(request, exc)
    if not isinstance(exc, APIError):  # a route's refusal is the caller's business; engine and storage trouble is ours
        log.warning("%s %s: %s (%s)", request.method, request.url.path, exc.message, exc.kind)
    return error_response(exc.status, exc.message, exc.kind)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, HTTPException):
        return await _unexpected(request, exc)
    kind = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
    return error_response(exc.status_code, f"{exc.detail}: {request.method} {request.url.path}", kind)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error in %s %s", request.method, request.url.path)
    return error_response(500, f"internal error: {type(exc).__name__}", "InternalServerError")


EXCEPTION_HANDLERS = {
    AibrixError: _aibrix_error,
    HTTPException: _http_error,
    Exception: _unexpected,
}
