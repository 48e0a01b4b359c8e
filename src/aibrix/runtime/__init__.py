"""The runtime sidecar: HTTP API over the engine layer."""
