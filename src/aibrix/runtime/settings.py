"""Runtime settings: environment variables from the AIBrix docs, overridden by command-line flags."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from aibrix.engines import ENGINES
from aibrix.peft import DEFAULT_MAX_FILES, BaseModelCheck
from aibrix.storage.uri import REMOTE_SCHEMES

LogLevel = Literal["critical", "error", "warning", "info", "debug"]

# setting name -> environment variable
ENV_VARS = {
    "engine": "INFERENCE_ENGINE",
    "engine_endpoint": "INFERENCE_ENGINE_ENDPOINT",
    "engine_metrics_endpoint": "INFERENCE_ENGINE_METRICS_ENDPOINT",
    "engine_api_key": "INFERENCE_ENGINE_API_KEY",
    "engine_version": "INFERENCE_ENGINE_VERSION",
    "engine_timeout": "INFERENCE_ENGINE_TIMEOUT",
    "ready_timeout": "RUNTIME_READY_TIMEOUT",
    "ready_cache_seconds": "RUNTIME_READY_CACHE_SECONDS",
    "metric_scrape_path": "METRIC_SCRAPE_PATH",
    "metrics_enable_transformation": "METRICS_ENABLE_TRANSFORMATION",
    "metrics_raw_passthrough_mode": "METRICS_RAW_PASSTHROUGH_MODE",
    "metrics_scrape_timeout": "METRICS_SCRAPE_TIMEOUT",
    "metrics_rate_window": "METRICS_RATE_WINDOW_SECONDS",
    "log_level": "RUNTIME_LOG_LEVEL",
    "adapter_dir": "AIBRIX_ADAPTER_DIR",
    "credentials_root": "AIBRIX_CREDENTIALS_ROOT",
    "allow_metadata_urls": "AIBRIX_ALLOW_METADATA_URLS",
    "reconcile_seconds": "AIBRIX_ADAPTER_RECONCILE_SECONDS",
    "runtime_api_key": "AIBRIX_RUNTIME_API_KEY",
    "max_artifact_bytes": "AIBRIX_MAX_ARTIFACT_BYTES",
    "max_model_bytes": "AIBRIX_MAX_MODEL_BYTES",
    "model_dir": "DOWNLOADER_LOCAL_DIR",
    "max_body_bytes": "AIBRIX_MAX_BODY_BYTES",
    "lora_source": "AIBRIX_LORA_SOURCE",
    "lora_source_secret": "AIBRIX_LORA_SOURCE_SECRET",
    "resolve_miss_seconds": "AIBRIX_LORA_RESOLVE_MISS_SECONDS",
    "engine_max_lora_rank": "AIBRIX_ENGINE_MAX_LORA_RANK",
    "engine_max_adapters": "AIBRIX_ENGINE_MAX_ADAPTERS",
    "base_model_check": "AIBRIX_BASE_MODEL_CHECK",
    "allow_pickle_adapters": "AIBRIX_ALLOW_PICKLE_ADAPTERS",
    "max_adapter_files": "AIBRIX_MAX_ADAPTER_FILES",
}


class SettingsError(ValueError):
    """A setting has a value the runtime cannot use; the message names the variable or flag."""


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    engine: str = "vllm"
    engine_endpoint: str = "http://localhost:8000"
    engine_metrics_endpoint: str | None = None  # where the engine serves metrics, when not on its API port
    engine_api_key: SecretStr | None = None
    engine_version: str | None = None
    engine_timeout: float = Field(60.0, gt=0, le=3600)
    ready_timeout: float | None = Field(None, gt=0, le=60)  # None: the engine's own (engines/base.py)
    ready_cache_seconds: float = Field(1.0, ge=0, le=60)
    metric_scrape_path: str | None = None
    metrics_enable_transformation: bool = True
    metrics_raw_passthrough_mode: bool = False
    metrics_scrape_timeout: float = Field(3.0, gt=0, le=60)
    metrics_rate_window: float = Field(10.0, gt=0, le=3600)
    adapter_dir: str = "/tmp/aibrix/adapters"
    credentials_root: str = "/var/run/secrets/aibrix"
    allow_metadata_urls: bool = False
    reconcile_seconds: float = Field(1.0, gt=0, le=3600)
    runtime_api_key: SecretStr | None = None
    max_artifact_bytes: int = Field(50 << 30, gt=0)
    max_model_bytes: int = Field(1 << 40, gt=0)
    model_dir: str = "/tmp/aibrix/models/"
    max_body_bytes: int = Field(1 << 20, gt=0)
    lora_source: str | None = None  # where vLLM's resolver finds an adapter nobody loaded: a URL with {name}
    lora_source_secret: str | None = Field(None, max_length=253)
    resolve_miss_seconds: float = Field(10.0, ge=0, le=3600)
    engine_max_lora_rank: int | None = Field(None, gt=0, le=65536)
    engine_max_adapters: int | None = Field(None, gt=0, le=1_000_000)
    base_model_check: BaseModelCheck = BaseModelCheck.WARN
    allow_pickle_adapters: bool = False
    max_adapter_files: int = Field(DEFAULT_MAX_FILES, gt=0, le=1_000_000)
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=1, le=65535)
    log_level: LogLevel = "info"
    enable_docs: bool = False

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in ENGINES:
            raise ValueError(f"expected one of {', '.join(ENGINES)}")
        return value

    @field_validator("engine_endpoint", "engine_metrics_endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        scheme, _, rest = value.partition("://")
        if scheme not in ("http", "https") or not rest or rest.startswith("/"):
            raise ValueError("expected an http:// or https:// URL such as http://localhost:8000")
        return value

    @field_validator("metric_scrape_path")
    @classmethod
    def _absolute_path(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith("/"):
            raise ValueError("expected a path starting with '/', such as /metrics")
        return value

    @field_validator("lora_source")
    @classmethod
    def _source_template(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        value = value.strip()
        if "{name}" not in value:
            raise ValueError("expected a URL holding {name}, such as s3://bucket/adapters/{name}/")
        if not value.startswith(REMOTE_SCHEMES):
            raise ValueError(f"expected a URL starting with one of {', '.join(REMOTE_SCHEMES)}")
        return value

    @property
    def transform_metrics(self) -> bool:
        """METRICS_ENABLE_TRANSFORMATION=0 forces raw pass-through whatever METRICS_RAW_PASSTHROUGH_MODE says."""
        return self.metrics_enable_transformation and not self.metrics_raw_passthrough_mode

    @property
    def scrape_path(self) -> str:
        return self.metric_scrape_path or ENGINES[self.engine].metrics_path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aibrix_runtime",
        description="AIBrix AI Engine Runtime: a management sidecar for an LLM inference engine.",
    )
    parser.add_argument("--host", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8080)")
    parser.add_argument("--engine", help=f"engine kind, one of {', '.join(ENGINES)} (env INFERENCE_ENGINE)")
    parser.add_argument("--engine-endpoint", help="engine base URL (env INFERENCE_ENGINE_ENDPOINT)")
    parser.add_argument("--engine-timeout", type=float, help="seconds allowed for one engine call (default 60)")
    parser.add_argument("--log-level", choices=list(get_args(LogLevel)), help="log level (default info)")
    parser.add_argument(
        "--enable-docs",
        "--enable-fastapi-docs",
        dest="enable_docs",
        action="store_true",
        default=None,
        help="serve the OpenAPI schema at /openapi.json and docs at /docs",
    )
    return parser


def load_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings from ``environ`` then ``argv``; raise SettingsError naming the bad variable or flag."""
    environ = os.environ if environ is None else environ
    args = vars(_parser().parse_args(argv))
    values: dict[str, object] = {}
    origin: dict[str, str] = {}
    for field, var in ENV_VARS.items():
        if environ.get(var, "") != "":
            values[field], origin[field] = environ[var], var
    if "log_level" not in values and environ.get("LOG_LEVEL"):  # upstream's variable, when ours is not set
        values["log_level"], origin["log_level"] = environ["LOG_LEVEL"].strip().lower(), "LOG_LEVEL"
    for field, value in args.items():
        if value is not None:
            values[field], origin[field] = value, "--" + field.replace("_", "-")
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            name = origin.get(field, field)
            shown = "<hidden>" if field.endswith("api_key") else repr(values.get(field))
            problems.append(f"{name}={shown}: {error['msg'].removeprefix('Value error, ')}")
        raise SettingsError("; ".join(problems)) from None
