"""What the tests share: processes (simulators, runtimes, controllers), servers standing in for storage and the Hub,
the fake and the real Kubernetes API, real vLLM, network namespaces and certificates."""
