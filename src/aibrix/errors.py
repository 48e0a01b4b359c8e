"""Every failure we report, in one tree. ``status`` is the HTTP status the runtime answers with and ``type`` the
name in the error body; a subclass that sets neither answers as its family does.

    AibrixError                    500
    ├── EngineError                502  an engine call failed                           (engines/errors.py)
    │   ├── EngineUnavailable      502  refused, reset, name not found
    │   ├── EngineTimeout          504  no answer in time
    │   ├── EngineRejected         4xx  the engine's own refusal, its status kept
    │   ├── NotSupported           501  no API for this on this engine
    │   ├── AdapterAlreadyLoaded   409
    │   ├── AdapterNotFound        404
    │   └── AdapterRejected        422  an adapter the engine can never load
    │       └── RankTooHigh        422  above this engine's rank limit (another engine may take it)
    ├── StorageError               502  fetching an artifact failed                     (storage/base.py)
    │   ├── NotFound 404 · AccessDenied 403 · BadURI 400 · BadSetting 400 · TooLarge 413
    │   ├── NoSpace 507 · LocalWriteError 500   the local disk, not the source
    │   └── TransientError         502  worth retrying (``transient``; ``retry_after``)
    ├── TransportError             502  a server could not be reached or read         (engines/transport.py)
    │   └── TransportTimeout       504
    ├── InvalidHeader              400  a header value with a line break or NUL       (engines/transport.py)
    ├── APIError                   any  a route refusing a request                     (runtime/errors.py)
    └── LoadError                  502  the controller's failed load, with what to do next (controller/loader.py)

The runtime maps them to responses with one handler, by isinstance: nothing falls through to a 500 by accident.
"""

from __future__ import annotations

# Error text is built from what servers, archives and callers sent; none of it may grow a reply, a record, a log line,
# an Event or a status condition without bound.
MAX_ERROR_TEXT = 1000


def capped(text: str, limit: int = MAX_ERROR_TEXT) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


class AibrixError(Exception):
    status: int = 500
    type: str = ""  # empty: the class name

    def __init__(self, message: str = "", *, status: int | None = None, type: str | None = None) -> None:
        message = capped(message)
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type

    @property
    def kind(self) -> str:
        """The name error bodies give this failure."""
        return self.type or self.__class__.__name__
