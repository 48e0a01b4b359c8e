"""``aibrix_engine_sim``: a GPU-free stand-in for vLLM or SGLang with their management API and metrics."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from aibrix.sim import SIM_ENGINES


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
    parser.add_argument("--max-running", type=int, default=64, help="requests run at once; the rest wait")
    vllm = parser.add_argument_group("vLLM serving flags (same meaning as vLLM's)")
    vllm.add_argument("--model-path", help="the model's folder: root of the base model card (default: --model)")
    vllm.add_argument("--max-model-len", type=int, default=32768)
    vllm.add_argument("--max-lora-rank", type=int, default=16, help="adapters of a higher rank are refused (500)")
    vllm.add_argument("--max-loras", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        import prometheus_client  # noqa: F401 - the simulator's engine metrics are prometheus_client families
    except ImportError:
        print("aibrix_engine_sim: the simulator needs its extra: pip install 'aibrix[sim]'", file=sys.stderr)
        raise SystemExit(2) from None
    import uvicorn

    from aibrix.sim.app import build_sim_app
    from aibrix.sim.engine import Timing
    from aibrix.sim.vllm import VLLMLimits, runtime_lora_allowed

    app = build_sim_app(
        args.engine,
        args.model,
        api_key=args.api_key,
        allow_lora=args.engine != "vllm" or runtime_lora_allowed(),
        error_style=args.error_style,
        timing=Timing(ttft=args.ttft_ms / 1000, itl=args.itl_ms / 1000, lora_load=args.lora_load_ms / 1000),
        max_running=args.max_running,
        sglang_lists_adapters=not args.sglang_legacy_models,
        metrics_payload=args.metrics_payload.read() if args.metrics_payload else None,
        vllm_limits=VLLMLimits(args.max_model_len, args.max_lora_rank, args.max_loras, args.model_path),
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
