"""Runtime settings: environment variables from the AIBrix docs, overridden by command-line flags."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aibrix.engines import ENGINES
from aibrix.peft import DEFAULT_MAX_FILES, BaseModelCheck
from aibrix.runtime.fields import Invalid, Secret, parse, spec
from aibrix.storage.uri import REMOTE_SCHEMES

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")

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


def _known_engine(value: str) -> str:
    value = value.strip().lower()
    if value not in ENGINES:
        raise ValueError(f"expected one of {', '.join(ENGINES)}")
    return value


def _http_url(value: str) -> str:
    value = value.strip().rstrip("/")
    scheme, _, rest = value.partition("://")
    if scheme not in ("http", "https") or not rest or rest.startswith("/"):
        raise ValueError("expected an http:// or https:// URL such as http://localhost:8000")
    return value


def _absolute_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("expected a path starting with '/', such as /metrics")
    return value


def _source_template(value: str) -> str:
    value = value.strip()
    if "{name}" not in value:
        raise ValueError("expected a URL holding {name}, such as s3://bucket/adapters/{name}/")
    if not value.startswith(REMOTE_SCHEMES):
        raise ValueError(f"expected a URL starting with one of {', '.join(REMOTE_SCHEMES)}")
    return value


@dataclass(frozen=True)
class Settings:
    engine: str = spec(str, "vllm", check=_known_engine)
    engine_endpoint: str = spec(str, "http://localhost:8000", check=_http_url)
    engine_metrics_endpoint: str | None = spec(str, None, check=_http_url)  # when not on the engine's API port
    engine_api_key: Secret | None = spec(Secret, None)
    engine_version: str | None = spec(str, None)
    engine_timeout: float = spec(float, 60.0, gt=0, le=3600)
    ready_timeout: float | None = spec(float, None, gt=0, le=60)  # None: the engine's own (engines/base.py)
    ready_cache_seconds: float = spec(float, 1.0, ge=0, le=60)
    metric_scrape_path: str | None = spec(str, None, check=_absolute_path)
    metrics_enable_transformation: bool = spec(bool, True)
    metrics_raw_passthrough_mode: bool = spec(bool, False)
    metrics_scrape_timeout: float = spec(float, 3.0, gt=0, le=60)
    metrics_rate_window: float = spec(float, 10.0, gt=0, le=3600)
    adapter_dir: str = spec(str, "/tmp/aibrix/adapters")
    credentials_root: str = spec(str, "/var/run/secrets/aibrix")
    allow_metadata_urls: bool = spec(bool, False)
    reconcile_seconds: float = spec(float, 1.0, gt=0, le=3600)
    runtime_api_key: Secret | None = spec(Secret, None)
    max_artifact_bytes: int = spec(int, 50 << 30, gt=0)
    max_model_bytes: int = spec(int, 1 << 40, gt=0)
    model_dir: str = spec(str, "/tmp/aibrix/models/")
    max_body_bytes: int = spec(int, 1 << 20, gt=0)
    lora_source: str | None = spec(str, None, check=_source_template)  # for vLLM's resolver: a URL with {name}
    lora_source_secret: str | None = spec(str, None, max_length=253)
    resolve_miss_seconds: float = spec(float, 10.0, ge=0, le=3600)
    engine_max_lora_rank: int | None = spec(int, None, gt=0, le=65536)
    engine_max_adapters: int | None = spec(int, None, gt=0, le=1_000_000)
    base_model_check: BaseModelCheck = spec(BaseModelCheck, BaseModelCheck.WARN)
    allow_pickle_adapters: bool = spec(bool, False)
    max_adapter_files: int = spec(int, DEFAULT_MAX_FILES, gt=0, le=1_000_000)
    host: str = spec(str, "0.0.0.0")
    port: int = spec(int, 8080, ge=1, le=65535)
    log_level: str = spec(str, "info", choices=LOG_LEVELS)
    enable_docs: bool = spec(bool, False)

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
    parser.add_argument("--log-level", choices=list(LOG_LEVELS), help="log level (default info)")
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
        return parse(Settings, values, forbid_extra=True)
    except Invalid as exc:
        problems = []
        for field, problem in exc.problems:
            name = origin.get(field, field)
            shown = "<hidden>" if field.endswith("api_key") else repr(values.get(field))
            problems.append(f"{name}={shown}: {problem}")
        raise SettingsError("; ".join(problems)) from None
