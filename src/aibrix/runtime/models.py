"""Request bodies of the runtime API, validated before anything reaches the engine."""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from aibrix.names import ADAPTER_NAME_RULE, MAX_NAME, PATH_COMPONENT, is_adapter_name
from aibrix.runtime.errors import APIError


def _adapter_name(value: str) -> str:
    """Adapter names become folder names: upstream's rule, vLLM's examples (sql_lora) and Kubernetes names pass."""
    if not is_adapter_name(value):
        raise ValueError(f"must be {ADAPTER_NAME_RULE}")
    return value


def _no_control_chars(value: str) -> str:
    if any(ord(ch) < 32 for ch in value):
        raise ValueError("must not contain control characters")
    return value


AdapterName = Annotated[
    str,
    AfterValidator(_adapter_name),
    Field(json_schema_extra={"pattern": f"^(?!.*\\.\\.){PATH_COMPONENT.pattern}$", "maxLength": MAX_NAME}),
]


Text = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_no_control_chars)]


class LoadAdapterRequest(BaseModel):
    """Either ``lora_path`` (the engine reads it as is) or ``artifact_url`` (the runtime downloads it first)."""

    model_config = ConfigDict(extra="ignore")

    lora_name: AdapterName
    lora_path: Text | None = None
    artifact_url: Text | None = None
    # sha256 of the folder's manifest, or of the one file (aibrix.peft.folder_digest); checked before the engine load
    artifact_digest: Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")] | None = None
    replace: bool = False  # swap in this version of a loaded adapter, the old one serving until it is in
    credentials: dict[str, str] | None = None
    credentials_secret: Annotated[str, Field(max_length=253)] | None = None
    additional_config: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> LoadAdapterRequest:
        if (self.lora_path is None) == (self.artifact_url is None):
            raise ValueError("give exactly one of lora_path and artifact_url")
        return self


class ResolveAdapterRequest(BaseModel):
    """What vLLM's resolver asks (plugins/vllm-lora-resolver): an adapter by name, for the engine's base model."""

    model_config = ConfigDict(extra="ignore")

    lora_name: AdapterName
    base_model: Text | None = None


class UnloadAdapterRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    lora_name: AdapterName
    cleanup_local: bool = True


Body = TypeVar("Body", bound=BaseModel)


def parse_body(raw: bytes, model: type[Body]) -> Body:
    """Parse a JSON body into ``model``: 400 when it is not JSON, 422 naming each bad field."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise APIError(400, f"request body is not valid JSON: {exc}", "BadRequest") from None
    if not isinstance(data, dict):
        raise APIError(400, "request body must be a JSON object", "BadRequest")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise APIError(422, problems, "ValidationError") from None


class DownloadModelRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    model_uri: Text
    local_dir: Text | None = None
    model_name: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    # upstream's keys (ak, sk, endpoint, region, hf_token, num_threads, ...); secrets are never echoed or logged
    download_extra_config: dict[str, Any] | None = None


class ListModelsRequest(BaseModel):
    """GET /v1/model/list's optional JSON body, as upstream takes it (a ``local_dir`` query string also works)."""

    model_config = ConfigDict(extra="ignore")

    local_dir: Text | None = None
