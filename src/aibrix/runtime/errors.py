"""Every error the runtime answers is JSON ``{"error": {"message", "type", "code"}}``."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from aibrix.engines.errors import EngineError
from aibrix.storage.base import (
    AccessDenied,
    BadSetting,
    BadURI,
    LocalWriteError,
    NoSpace,
    NotFound,
    StorageError,
    TooLarge,
)

# Storage failures as API statuses, by isinstance (a subclass answers as its family); upstream trouble is 502.
STORAGE_STATUSES: list[tuple[type[StorageError], int]] = [
    (NotFound, 404), (AccessDenied, 403), (BadURI, 400), (BadSetting, 400), (TooLarge, 413), (NoSpace, 507),
    (LocalWriteError, 500),
]  # fmt: skip

log = logging.getLogger("aibrix.runtime")


class APIError(Exception):
    """An error raised by a route; becomes an error body with ``status``."""

    def __init__(self, status: int, message: str, type: str) -> None:
        super().__init__(message)
        self.status, self.message, self.type = status, message, type


def storage_status(exc: StorageError) -> int:
    return next((code for kind, code in STORAGE_STATUSES if isinstance(exc, kind)), 502)


def error_response(status: int, message: str, type: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type, "code": status}}, status_code=status)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, APIError)
    return error_response(exc.status, exc.message, exc.type)


async def _engine_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EngineError)
    log.warning("%s %s: %s (%s)", request.method, request.url.path, exc.message, exc.type)
    return error_response(exc.status, exc.message, exc.type)


async def _storage_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StorageError)
    status = storage_status(exc)
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    return error_response(status, str(exc), type(exc).__name__)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    kind = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
    return error_response(exc.status_code, f"{exc.detail}: {request.method} {request.url.path}", kind)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error in %s %s", request.method, request.url.path)
    return error_response(500, f"internal error: {type(exc).__name__}", "InternalServerError")


EXCEPTION_HANDLERS = {
    APIError: _api_error,
    EngineError: _engine_error,
    StorageError: _storage_error,
    HTTPException: _http_error,
    Exception: _unexpected,
}
