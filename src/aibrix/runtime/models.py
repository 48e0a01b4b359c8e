"""Request bodies of the runtime API, validated before anything reaches the engine."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeVar

from aibrix.names import ADAPTER_NAME_RULE, MAX_NAME, PATH_COMPONENT, is_adapter_name
from aibrix.runtime.errors import APIError
from aibrix.runtime.fields import REQUIRED, Invalid, parse, spec


def _adapter_name(value: str) -> str:
    """Adapter names become folder names: upstream's rule, vLLM's examples (sql_lora) and Kubernetes names pass."""
    if not is_adapter_name(value):
        raise ValueError(f"must be {ADAPTER_NAME_RULE}")
    return value


def _no_control_chars(value: str) -> str:
    if any(ord(ch) < 32 for ch in value):
        raise ValueError("must not contain control characters")
    return value


_NAME_SCHEMA = {"pattern": f"^(?!.*\\.\\.){PATH_COMPONENT.pattern}$", "maxLength": MAX_NAME}


def _name() -> Any:
    return spec(str, check=_adapter_name, schema=_NAME_SCHEMA)


def _text(*required: Any) -> Any:
    """Free text up to 4 KiB; optional (None) unless called as ``_text(REQUIRED)``."""
    return spec(str, *(required or (None,)), min_length=1, max_length=4096, check=_no_control_chars)


@dataclass(frozen=True)
class LoadAdapterRequest:
    """Either ``lora_path`` (the engine reads it as is) or ``artifact_url`` (the runtime downloads it first)."""

    lora_name: str = _name()
    lora_path: str | None = _text()
    artifact_url: str | None = _text()
    # sha256 of the folder's manifest, or of the one file (aibrix.peft.folder_digest); checked before the engine load
    artifact_digest: str | None = spec(str, None, pattern=r"^sha256:[0-9a-f]{64}$")
    replace: bool = spec(bool, False)  # swap in this version of a loaded adapter, the old one serving until it is in
    credentials: dict[str, str] | None = spec(dict, None, values=str)
    credentials_secret: str | None = spec(str, None, max_length=253)
    additional_config: dict[str, Any] | None = spec(dict, None)

    def __post_init__(self) -> None:
        if (self.lora_path is None) == (self.artifact_url is None):
            raise ValueError("give exactly one of lora_path and artifact_url")


@dataclass(frozen=True)
class ResolveAdapterRequest:
    """What vLLM's resolver asks (plugins/vllm-lora-resolver): an adapter by name, for the engine's base model."""

    lora_name: str = _name()
    base_model: str | None = _text()


@dataclass(frozen=True)
class UnloadAdapterRequest:
    lora_name: str = _name()
    cleanup_local: bool = spec(bool, True)


@dataclass(frozen=True)
class DownloadModelRequest:
    model_uri: str = _text(REQUIRED)
    local_dir: str | None = _text()
    model_name: str | None = spec(str, None, min_length=1, max_length=255)
    # upstream's keys (ak, sk, endpoint, region, hf_token, num_threads, ...); secrets are never echoed or logged
    download_extra_config: dict[str, Any] | None = spec(dict, None)


@dataclass(frozen=True)
class ListModelsRequest:
    """GET /v1/model/list's optional JSON body, as upstream takes it (a ``local_dir`` query string also works)."""

    local_dir: str | None = _text()


Body = TypeVar("Body")


def parse_body(raw: bytes, model: type[Body]) -> Body:
    """Parse a JSON body into ``model``: 400 when it is not JSON, 422 naming each bad field."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise APIError(400, f"request body is not valid JSON: {exc}", "BadRequest") from None
    if not isinstance(data, dict):
        raise APIError(400, "request body must be a JSON object", "BadRequest")
    try:
        return parse(model, data)
    except Invalid as exc:
        raise APIError(422, str(exc), "ValidationError") from None
