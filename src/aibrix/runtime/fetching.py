"""A blocking artifact download run in a download thread so that cancelling the load stops it, and the size of what
it wrote."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

# A blocking download into the named folder of the adapter directory, stopped when the event it is given is set.
FetchInto = Callable[[str], Callable[[threading.Event], Any]]


def folder_size(path: str) -> int:
    total = 0
    for folder, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


async def run_download(fetch: Callable[[threading.Event], Any], executor: ThreadPoolExecutor) -> None:
    """Run ``fetch`` in a download thread; when the load is cancelled, tell it to stop and wait until it has, so the
    cleanup that follows never races a thread still writing into the folder."""
    stop = threading.Event()
    thread = asyncio.get_running_loop().run_in_executor(executor, fetch, stop)
    try:
        await asyncio.shield(thread)
    except asyncio.CancelledError:
        stop.set()
        with contextlib.suppress(Exception):
            await thread
        raise
