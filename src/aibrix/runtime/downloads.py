"""Background model downloads for POST /v1/model/download and GET /v1/model/list (as upstream offers them)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from aibrix.downloader.api import fetch_model, thread_count
from aibrix.downloader.config import extra_config_env, resolved_env
from aibrix.downloader.progress import Progress
from aibrix.downloader.records import is_download, is_unfinished
from aibrix.errors import capped
from aibrix.names import model_name_problem
from aibrix.runtime.errors import APIError
from aibrix.storage.base import BadURI
from aibrix.storage.credentials import confine
from aibrix.storage.policy import OutboundPolicy
from aibrix.storage.uri import HF_REPO, REMOTE_SCHEMES, check_uri, redact, scheme_of

log = logging.getLogger("aibrix.runtime")
MAX_PENDING = 64  # downloads under way or waiting for a thread
MAX_STATUSES = 256  # finished downloads whose status (and failure reason) is kept for /v1/model/list


@dataclass
class ModelStatus:
    model_name: str
    model_root_path: str
    source: str
    model_status: str  # downloading | downloaded | failed | incomplete
    bytes_done: int = 0
    bytes_total: int = 0
    reason: str = ""


class ModelDownloads:
    """Downloads run in worker threads of their own (the event loop never blocks, and hours-long downloads never
    hold the default executor that adapter loads and DNS look-ups need); one at a time per target directory, at
    most ``parallel`` at once (the others wait their turn)."""

    def __init__(
        self, root: Path, env: Mapping[str, str] | None = None, parallel: int = 2, *, policy: OutboundPolicy
    ) -> None:
        self.root, self.policy = root, policy
        self.env = dict(os.environ if env is None else env)
        self.statuses: dict[str, ModelStatus] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._executor = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="model-download")

    def start(
        self, model_uri: str, local_dir: str | None, model_name: str | None, extra: dict[str, Any] | None = None
    ) -> ModelStatus:
        """Start (or join) the download of ``model_uri``; every check that needs no network is made now (400)."""
        base = self._base(local_dir)
        self.policy.check_uri(model_uri)
        if not (model_uri.startswith(REMOTE_SCHEMES) or HF_REPO.fullmatch(model_uri)):
            raise BadURI(f"unsupported model URI {redact(model_uri)!r}; expected one of {', '.join(REMOTE_SCHEMES)}")
        name = model_name or check_uri(model_uri)
        problem = model_name_problem(name)
        if problem:
            raise BadURI(problem)
        # unknown keys and too many threads: 400 now, not a failed download later
        thread_count(extra_config_env(extra or {}, scheme_of(model_uri)))
        target = base / name
        key = str(target)
        running = self._tasks.get(key)
        if running is not None and not running.done():
            return self.statuses[key]
        self._make_room()
        status = ModelStatus(name, key, redact(model_uri), "downloading")
        self.statuses[key] = status
        self._tasks[key] = asyncio.create_task(self._run(status, model_uri, base, name, extra))
        return status

    async def _run(
        self, status: ModelStatus, model_uri: str, base: Path, name: str, extra: dict[str, Any] | None
    ) -> None:
        def progress(p: Progress) -> None:
            status.bytes_done, status.bytes_total = p.done, p.total

        try:
            scheme = scheme_of(model_uri)
            env = confine(resolved_env(self.env, scheme), extra_config_env(extra or {}, scheme), model_uri)
            fetch = partial(fetch_model, model_uri, base, name, env=env, on_progress=progress, policy=self.policy)
            await asyncio.get_running_loop().run_in_executor(self._executor, fetch)
            status.model_status = "downloaded"
        except Exception as exc:  # reported in the listing; the runtime keeps serving
            status.model_status, status.reason = "failed", capped(str(exc) or type(exc).__name__)
            log.warning("model download %s failed: %s", status.source, status.reason)

    def _make_room(self) -> None:
        """Bound what callers can pile up: at most MAX_PENDING downloads not finished (429 beyond), and the
        statuses of at most MAX_STATUSES finished ones (the oldest go; a downloaded model is still listed from disk)."""
        for key in [key for key, task in self._tasks.items() if task.done()]:
            del self._tasks[key]
        if len(self._tasks) >= MAX_PENDING:
            busy = f"{len(self._tasks)} model downloads are already under way or waiting; try later"
            raise APIError(429, busy, "TooManyDownloads")
        finished = [key for key in self.statuses if key not in self._tasks]
        for key in finished[: max(0, len(finished) - MAX_STATUSES + 1)]:
            del self.statuses[key]

    def listing(self, local_dir: str | None = None) -> list[dict[str, Any]]:
        base = self._base(local_dir)
        found = {key: asdict(s) for key, s in self.statuses.items() if Path(key) == base / s.model_name}
        for folder in _model_folders(base):
            if str(folder) not in found:
                state = "incomplete" if is_unfinished(folder) else "downloaded"
                name = folder.relative_to(base).as_posix()
                found[str(folder)] = asdict(ModelStatus(name, str(folder), "", state))
        return [found[key] for key in sorted(found)]

    def _base(self, local_dir: str | None) -> Path:
        base = Path(local_dir) if local_dir else self.root
        if not base.resolve().is_relative_to(self.root.resolve()):
            raise BadURI(f"local_dir must be inside {self.root}")
        return base


def _model_folders(base: Path) -> list[Path]:
    """Downloaded models under ``base``: ``<name>/`` and ``<organization>/<name>/`` (HuggingFace's layout)."""
    if not base.is_dir():
        return []
    found = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        if is_download(folder):
            found.append(folder)
        else:
            found += [sub for sub in sorted(folder.iterdir()) if sub.is_dir() and is_download(sub)]
    return found
