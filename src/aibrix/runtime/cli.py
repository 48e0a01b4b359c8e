"""``aibrix_runtime``: start the runtime sidecar."""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    # Start-up is mostly imports (~0.2 s); the collector would walk every new module object several times during
    # them. Off while importing, then what was imported is frozen out of every later collection.
    gc.disable()
    from aibrix.runtime.settings import SettingsError, load_settings

    try:
        settings = load_settings(argv)
    except SettingsError as exc:
        print(f"aibrix_runtime: invalid setting: {exc}", file=sys.stderr)
        raise SystemExit(2) from None

    import uvicorn

    from aibrix.downloader.config import ignored_settings
    from aibrix.runtime.app import build_app
    from aibrix.storage.base import redact

    gc.freeze()
    gc.enable()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("aibrix.runtime")
    log.info(
        "aibrix runtime for %s at %s listening on %s:%d",
        settings.engine,
        redact(settings.engine_endpoint),
        settings.host,
        settings.port,
    )
    for line in ignored_settings(os.environ):  # model downloads read the downloader's variables
        log.warning("%s", line)
    uvicorn.run(
        build_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.log_level == "debug",
        lifespan="on",
    )


if __name__ == "__main__":
    main()
