"""Artifact delegation: turn a load request's artifact URL and credentials into one blocking download."""

from __future__ import annotations

import logging
import os
import posixpath
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from aibrix.downloader.api import fetch_model
from aibrix.downloader.config import resolved_env
from aibrix.runtime.artifacts import IGNORED_KEYS, KNOWN_KEYS, adapter_folder, credential_env, read_secret
from aibrix.runtime.fetching import FetchInto
from aibrix.runtime.models import LoadAdapterRequest
from aibrix.runtime.settings import Settings
from aibrix.runtime.telemetry import Telemetry
from aibrix.storage.base import BadURI, StorageError
from aibrix.storage.credentials import confine
from aibrix.storage.policy import OutboundPolicy
from aibrix.storage.uri import REMOTE_SCHEMES, redact, scheme_of

log = logging.getLogger("aibrix.runtime")


def artifact_fetcher(settings: Settings, telemetry: Telemetry, body: LoadAdapterRequest) -> FetchInto:
    """Blocking downloads of the artifact into a folder of the adapter directory (its name, or the spare a
    replacement takes turns with), credentials resolved once and now, so a bad secret fails before anything is
    written."""
    root = Path(settings.adapter_dir)
    adapter_folder(root, body.lora_name)
    credentials: dict[str, str] = {}
    if body.credentials_secret:
        credentials.update(read_secret(Path(settings.credentials_root), body.credentials_secret))
    credentials.update(body.credentials or {})
    # upstream merges additional_config into the credentials; its credential keys count, the engine's (api-key) not
    credentials.update({k: str(v) for k, v in (body.additional_config or {}).items() if k in KNOWN_KEYS})
    for key in sorted(set(credentials) & set(IGNORED_KEYS)):
        log.warning("adapter %s: credential key %s is ignored: %s", body.lora_name, key, IGNORED_KEYS[key])
    scheme = scheme_of(body.artifact_url or "")
    env = confine(resolved_env(os.environ, scheme), credential_env(credentials, scheme), body.artifact_url or "")
    policy = OutboundPolicy(
        settings.allow_metadata_urls, allow_local_files=False, max_bytes=settings.max_artifact_bytes
    )
    uri = body.artifact_url or ""
    if not uri.startswith(REMOTE_SCHEMES):
        raise BadURI(f"artifact_url must be an absolute path or start with one of {', '.join(REMOTE_SCHEMES)}")

    def fetch_into(folder: str) -> Callable[[threading.Event], None]:
        def fetch(stop: threading.Event) -> None:
            def stop_when_asked(progress: object) -> None:
                if stop.is_set():
                    raise StorageError(f"{redact(uri)}: the load was cancelled")

            stop_when_asked(None)  # a load cancelled while it waited for a download thread
            started = time.monotonic()
            try:
                result = fetch_model(uri, root, folder, env=env, policy=policy, on_progress=stop_when_asked)
            except OSError as exc:  # local I/O trouble (name too long, permissions): a clear error, not a 500
                raise StorageError(f"{redact(uri)}: {exc.strerror or exc}") from None
            telemetry.download_bytes.inc(result.downloaded_bytes)
            telemetry.download_seconds.observe(time.monotonic() - started)
            from aibrix.downloader.archives import is_archive, unpack  # tarfile, zipfile: only when an artifact comes

            name = posixpath.basename(unquote(urlsplit(uri).path))
            if uri.startswith(("http://", "https://")) and is_archive(name) and (result.path / name).is_file():
                unpack(result.path / name, result.path, settings.max_artifact_bytes)

        return fetch

    return fetch_into
