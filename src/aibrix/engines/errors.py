"""Engine failures, each carrying the HTTP status the runtime answers with (the tree: ``aibrix/errors.py``)."""

from __future__ import annotations

from aibrix.errors import AibrixError


class EngineError(AibrixError):
    """An engine call that did not succeed; ``status`` and ``type`` become the API error."""

    status = 502
    type = "EngineError"


class EngineUnavailable(EngineError):
    """The engine could not be reached (refused, reset, DNS)."""

    status = 502
    type = "EngineUnavailable"


class EngineTimeout(EngineError):
    """The engine accepted the connection but did not answer in time."""

    status = 504
    type = "EngineTimeout"


class EngineRejected(EngineError):
    """The engine answered with an error of its own; its status (4xx) and message pass through."""

    type = "EngineRejected"


class NotSupported(EngineError):
    """The engine has no API for this operation (or it is switched off)."""

    status = 501
    type = "NotSupported"


class AdapterAlreadyLoaded(EngineError):
    """The engine already holds an adapter under this name."""

    status = 409
    type = "AdapterAlreadyLoaded"


class AdapterNotFound(EngineError):
    """The engine holds no adapter under this name."""

    status = 404
    type = "AdapterNotFound"


class AdapterRejected(EngineError):
    """The engine cannot load this adapter, and retrying will not change that (rank too high, not an adapter)."""

    status = 422
    type = "AdapterRejected"


class RankTooHigh(AdapterRejected):
    """The adapter's rank is above this engine's limit: an engine with a higher limit can load it."""

    type = "RankTooHigh"
