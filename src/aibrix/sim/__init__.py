"""The engine simulator: a GPU-free stand-in for vLLM and SGLang (the ``aibrix[sim]`` extra)."""

SIM_ENGINES = ("vllm", "sglang")
