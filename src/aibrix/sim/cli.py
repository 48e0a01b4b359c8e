"""``aibrix_engine_sim``: a GPU-free stand-in for vLLM or SGLang with their management API and metrics."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from aibrix.sim import SIM_ENGINES
from aibrix.sim.sglang_lora import SGLangLoRAFlags


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="aibrix_engine_sim", description=__doc__)
    parser.add_argument("--engine", choices=SIM_ENGINES, default="vllm")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model", default="Qwen/Qwen2.5-Coder-1.5B-Instruct", help="served model name")
    parser.add_argument("--api-key", default=os.environ.get("SIM_API_KEY"), help="require this bearer key")
    parser.add_argument(
        "--error-style",
        choices=("nested", "flat"),
        default="nested",
        help="vLLM error bodies: nested (current) or flat (vLLM <= 0.9)",
    )
    parser.add_argument(
        "--sglang-legacy-models",
        action="store_true",
        help="SGLang before PR #12229: /v1/models lists the base model only",
    )
    parser.add_argument(
        "--metrics-payload",
        type=argparse.FileType("rb"),
        help="serve this file at /metrics instead of live metrics (replay a captured payload)",
    )
    parser.add_argument("--ttft-ms", type=float, default=20.0, help="base time to first token")
    parser.add_argument("--itl-ms", type=float, default=5.0, help="time between generated tokens")
    parser.add_argument("--lora-load-ms", type=float, default=0.0, help="time an adapter load takes")
    parser.add_argument("--lora-load-ms-per-rank", type=float, default=0.0, help="more load time per unit of rank")
    parser.add_argument("--lora-load-ms-per-mb", type=float, default=0.0, help="more load time per MB of files")
    parser.add_argument("--max-running", type=int, default=64, help="requests run at once; the rest wait")
    vllm = parser.add_argument_group("vLLM serving flags (same meaning as vLLM's)")
    vllm.add_argument("--model-path", help="the model's folder: root of the base model card (default: --model)")
    vllm.add_argument("--max-model-len", type=int, default=32768)
    vllm.add_argument(
        "--max-lora-rank",
        type=int,
        default=None,
        help="adapters of a higher rank are refused (vLLM: 500, default 16; SGLang: 400, default "
        "inferred from --lora-paths)",
    )
    vllm.add_argument("--max-loras", type=int, default=1)
    vllm.add_argument(
        "--max-cpu-loras", type=int, default=None, help="adapters kept in the cache (default: --max-loras)"
    )
    _sglang_flags(parser)
    args = parser.parse_args(argv)
    flags = SGLangLoRAFlags(
        enable_lora=args.enable_lora or bool(args.lora_paths),  # --lora-paths turns LoRA on, as in SGLang
        max_lora_rank=args.max_lora_rank,
        target_modules=frozenset(args.lora_target_modules) if args.lora_target_modules else None,
        max_loras_per_batch=args.max_loras_per_batch,
        max_loaded_loras=args.max_loaded_loras,
        eviction_policy=args.lora_eviction_policy,
        lora_paths=dict(_lora_path(item) for item in args.lora_paths or []),
    )
    if args.engine == "sglang" and flags.problem():
        parser.error(str(flags.problem()))
    try:
        import prometheus_client  # noqa: F401 - the simulator's engine metrics are prometheus_client families
        import pydantic  # noqa: F401 - and it judges requests as vLLM's FastAPI does
    except ImportError:
        print("aibrix_engine_sim: the simulator needs its extra: pip install 'aibrix[sim]'", file=sys.stderr)
        raise SystemExit(2) from None
    import uvicorn

    from aibrix.sim.app import build_sim_app
    from aibrix.sim.engine import Timing
    from aibrix.sim.sglang import SGLangServing
    from aibrix.sim.vllm import VLLMLimits, runtime_lora_allowed

    app = build_sim_app(
        args.engine,
        args.model,
        api_key=args.api_key,
        allow_lora=args.engine != "vllm" or runtime_lora_allowed(),
        error_style=args.error_style,
        timing=Timing(
            ttft=args.ttft_ms / 1000,
            itl=args.itl_ms / 1000,
            lora_load=args.lora_load_ms / 1000,
            lora_load_per_rank=args.lora_load_ms_per_rank / 1000,
            lora_load_per_mb=args.lora_load_ms_per_mb / 1000,
        ),
        max_running=args.max_running,
        metrics_payload=args.metrics_payload.read() if args.metrics_payload else None,
        vllm_limits=VLLMLimits(
            args.max_model_len, args.max_lora_rank or 16, args.max_loras, args.model_path, args.max_cpu_loras
        ),
        sglang_flags=flags,
        sglang_serving=SGLangServing(
            list_adapters=not args.sglang_legacy_models,
            enable_metrics=args.enable_metrics,
            health_seconds=args.sglang_health_ms / 1000,
            ready_route=not args.sglang_no_ready,
        ),
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


def _sglang_flags(parser: argparse.ArgumentParser) -> None:
    """SGLang's serving flags with its defaults (arg_groups/fields/lora.py, observability), and the simulator's
    pacing of SGLang's health check."""
    group = parser.add_argument_group("SGLang serving flags (same meaning as SGLang's)")
    group.add_argument("--enable-lora", action="store_true")
    group.add_argument("--lora-target-modules", nargs="*", help="module names, or all")
    group.add_argument("--lora-paths", nargs="*", help="NAME=PATH or PATH, loaded at start")
    group.add_argument("--max-loras-per-batch", type=int, default=8)
    group.add_argument("--max-loaded-loras", type=int, default=None)
    group.add_argument("--lora-eviction-policy", choices=("lru", "fifo"), default="lru")
    group.add_argument("--enable-metrics", action="store_true", help="serve /metrics (SGLang serves none without)")
    group.add_argument(
        "--sglang-health-ms",
        type=float,
        default=1000.0,
        help="how long /health takes (SGLang: a one-token generation polled once a second)",
    )
    group.add_argument("--sglang-no-ready", action="store_true", help="a release without the /ready route")


def _lora_path(item: str) -> tuple[str, str]:
    """SGLang's ``--lora-paths`` item: NAME=PATH, or PATH named after its last component."""
    name, sep, path = item.partition("=")
    return (name, path) if sep else (os.path.basename(item.rstrip("/")), item)


if __name__ == "__main__":
    main()
