"""Start-up validation: a bad setting stops the runtime with one clear line naming it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from aibrix.runtime.settings import SettingsError, load_settings


def run_runtime(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aibrix.runtime.cli", "--host", "127.0.0.1", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=20,
    )


@pytest.mark.parametrize(
    "env, args, named",
    [
        ({"INFERENCE_ENGINE": "vllmm"}, [], "INFERENCE_ENGINE='vllmm'"),
        ({"INFERENCE_ENGINE_ENDPOINT": "localhost:8000"}, [], "INFERENCE_ENGINE_ENDPOINT"),
        ({"INFERENCE_ENGINE_TIMEOUT": "-1"}, [], "INFERENCE_ENGINE_TIMEOUT"),
        ({"METRIC_SCRAPE_PATH": "metrics"}, [], "METRIC_SCRAPE_PATH"),
        ({}, ["--port", "70000"], "--port"),
        (
            {"AIBRIX_LORA_SOURCE": "s3://bucket/adapters/"},
            [],
            "AIBRIX_LORA_SOURCE='s3://bucket/adapters/': expected a URL holding {name}",
        ),
        (
            {"AIBRIX_LORA_SOURCE": "/models/{name}"},
            [],
            "AIBRIX_LORA_SOURCE='/models/{name}': expected a URL starting with",
        ),
    ],
)
def test_bad_setting_exits_2_naming_it(env, args, named):
    result = run_runtime(env, *args)
    assert result.returncode == 2
    assert named in result.stderr
    assert "Traceback" not in result.stderr


def test_api_key_is_never_echoed():
    result = run_runtime({"INFERENCE_ENGINE_API_KEY": "topsecret", "INFERENCE_ENGINE": "nope"})
    assert result.returncode == 2
    assert "topsecret" not in result.stderr + result.stdout


def test_flags_override_environment():
    settings = load_settings(
        ["--engine", "sglang", "--engine-endpoint", "http://10.0.0.1:30000/", "--port", "9000"],
        {"INFERENCE_ENGINE": "vllm", "INFERENCE_ENGINE_ENDPOINT": "http://localhost:8000"},
    )
    assert (settings.engine, settings.engine_endpoint, settings.port) == ("sglang", "http://10.0.0.1:30000", 9000)


def test_defaults_follow_the_docs():
    settings = load_settings([], {})
    assert (settings.engine, settings.engine_endpoint, settings.port) == ("vllm", "http://localhost:8000", 8080)
    assert settings.scrape_path == "/metrics"


@pytest.mark.parametrize(
    "engine, path", [("xllm", "/brpc_metrics"), ("trtllm", "/prometheus/metrics"), ("sglang", "/metrics")]
)
def test_each_engine_knows_its_scrape_path(engine, path):
    assert load_settings([], {"INFERENCE_ENGINE": engine}).scrape_path == path
    assert load_settings([], {"INFERENCE_ENGINE": engine, "METRIC_SCRAPE_PATH": "/m"}).scrape_path == "/m"


def test_engine_name_is_case_insensitive():
    assert load_settings([], {"INFERENCE_ENGINE": " SGLang "}).engine == "sglang"


def test_settings_error_lists_every_problem():
    with pytest.raises(SettingsError) as info:
        load_settings([], {"INFERENCE_ENGINE": "x", "INFERENCE_ENGINE_ENDPOINT": "ftp://y"})
    assert "INFERENCE_ENGINE=" in str(info.value) and "INFERENCE_ENGINE_ENDPOINT=" in str(info.value)


@pytest.mark.parametrize(
    "env, transform",
    [
        ({}, True),
        ({"METRICS_RAW_PASSTHROUGH_MODE": "1"}, False),
        ({"METRICS_ENABLE_TRANSFORMATION": "0"}, False),
        ({"METRICS_ENABLE_TRANSFORMATION": "false", "METRICS_RAW_PASSTHROUGH_MODE": "0"}, False),
        ({"METRICS_ENABLE_TRANSFORMATION": "1", "METRICS_RAW_PASSTHROUGH_MODE": "0"}, True),
    ],
)
def test_metrics_mode_priority(env, transform):
    assert load_settings([], env).transform_metrics is transform


def test_bad_metrics_switch_is_named():
    with pytest.raises(SettingsError, match="METRICS_RAW_PASSTHROUGH_MODE='maybe'"):
        load_settings([], {"METRICS_RAW_PASSTHROUGH_MODE": "maybe"})
