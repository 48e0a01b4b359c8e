"""What the runtime's routes share, as one typed object on ``app.state.runtime`` (not loose attributes)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from aibrix.runtime.adapters import AdapterService
from aibrix.runtime.downloads import ModelDownloads
from aibrix.runtime.readiness import ReadinessProbe
from aibrix.runtime.resolver import Resolver
from aibrix.runtime.scrape import MetricsScraper
from aibrix.runtime.settings import Settings
from aibrix.runtime.telemetry import Telemetry


@dataclass(frozen=True)
class RuntimeState:
    settings: Settings
    adapters: AdapterService
    downloads: ModelDownloads
    telemetry: Telemetry
    scraper: MetricsScraper
    readiness: ReadinessProbe
    resolver: Resolver


def runtime_of(request: Request) -> RuntimeState:
    state: RuntimeState = request.app.state.runtime
    return state
