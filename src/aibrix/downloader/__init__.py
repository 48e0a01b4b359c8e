"""The model downloader. ``download_model`` here has upstream aibrix's signature and return value; the richer API
(environment, policy, progress callbacks, a result with counts) is ``aibrix.downloader.api.fetch_model``."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def download_model(
    model_uri: str,
    local_path: str | None = None,
    model_name: str | None = None,
    download_extra_config: dict[str, Any] | None = None,
    enable_progress_bar: bool = False,
) -> Path:
    """Download ``model_uri`` into ``<local_path>/<model_name>/`` and return that folder, as upstream does."""
    from aibrix.downloader import api
    from aibrix.downloader.cli import progress_bar

    result = api.fetch_model(
        model_uri,
        local_path,
        model_name,
        extra_config=download_extra_config,
        on_progress=progress_bar if enable_progress_bar else None,
    )
    return result.path


__all__ = ["download_model"]
