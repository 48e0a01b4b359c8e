"""Engine simulator: vLLM and SGLang management APIs, OpenAI serving and metrics, without a GPU."""
