"""AIBrix AI Engine Runtime: a management sidecar for LLM inference engines."""

__version__ = "0.1.0"
