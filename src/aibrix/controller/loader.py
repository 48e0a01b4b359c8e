"""Loading and unloading adapters on a pod: through its runtime sidecar, or straight to the engine.

Failures are sorted by what the controller should do next: try the same pod again later (the engine is starting,
a network blip), give up on this pod and fail over (it cannot host LoRA, its disk is full), or stop altogether
(the artifact or the credentials are wrong, and would be wrong on every pod).
"""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

from aibrix.auth import bearer
from aibrix.controller.direct_checks import HubFacts
from aibrix.controller.pods import Pod
from aibrix.controller.runtime_keys import KeyUnavailable, RuntimeKeys
from aibrix.controller.spec import AdapterSpec
from aibrix.engines import Engine, EngineClient, create_engine
from aibrix.engines.base import error_message, same_path
from aibrix.engines.errors import AdapterAlreadyLoaded, AdapterNotFound, EngineError, NotSupported
from aibrix.engines.transport import HTTPClient, Response, TransportError
from aibrix.errors import AibrixError
from aibrix.peft import InvalidAdapter, RankTooHigh, rank_refused
from aibrix.storage.uri import SchemeKind, redact, schemes_of

DELEGATED_SCHEMES = schemes_of(SchemeKind.OBJECT_STORE)  # an engine cannot fetch these: the sidecar does


class Outcome(enum.Enum):
    RETRY = "retry"  # the same pod may succeed later
    FAILOVER = "failover"  # this pod cannot host the adapter; choose another
    FATAL = "fatal"  # no pod can: the spec, artifact or credentials must change


class LoadError(AibrixError):
    """A load or unload on a pod that failed, with what the controller should do next, and the adapter's rank when
    the refusal named it (a rank above the pod's limit)."""

    def __init__(self, message: str, outcome: Outcome) -> None:
        super().__init__(message)
        self.outcome = outcome
        refused = rank_refused(message)
        self.rank = refused[0] if refused else None


class Loaded(NamedTuple):
    seconds: float
    rank: int | None  # the adapter's rank, when the runtime (or the Hub check) read its config


def classify(status: int) -> Outcome:
    """What an HTTP status from the runtime or engine means for the next attempt."""
    if status in (400, 401, 403, 404, 413, 422):
        return Outcome.FATAL
    if status in (405, 501, 507):
        return Outcome.FAILOVER
    return Outcome.RETRY


def _rank(response: Response) -> int | None:
    """The rank a runtime's load answer reports (it read adapter_config.json), if any."""
    try:
        rank = response.json().get("rank")
    except (ValueError, AttributeError):
        return None
    return rank if isinstance(rank, int) and not isinstance(rank, bool) and rank > 0 else None


def _error_type(response: Response) -> str | None:
    """The ``error.type`` of a runtime's refusal (``RankTooHigh`` is about the pod, not the adapter)."""
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("type")) if isinstance(error, dict) else None


def engine_path(url: str) -> str:
    """The path an engine is given without a runtime: Hub repo ids and local paths it can read itself."""
    for scheme in schemes_of(SchemeKind.HUB):
        if url.startswith(scheme):
            return url[len(scheme) :].strip("/")
    if url.startswith(DELEGATED_SCHEMES):
        raise LoadError(
            f"{redact(url)} needs the runtime sidecar to download it: add the aibrix-runtime container to the pods "
            "or run the controller with --enable-runtime-sidecar",
            Outcome.FATAL,
        )
    return url


# Every answer the controller reads from a pod is small: a load reply, a model list, a metrics page. A pod may be
# anyone's; a larger answer is refused as it arrives, so no pod can run the controller (256Mi) out of memory.
MAX_POD_REPLY = 4 << 20


@dataclass
class Loader:
    """Talks to pods; one pooled HTTP client per endpoint."""

    use_runtime: bool = True
    runtime_keys: RuntimeKeys | None = None  # None: no runtime is sent a key of its own
    timeout: float = 300.0  # a load includes the artifact download
    hub: HubFacts = field(default_factory=HubFacts)  # checks of Hub repositories before a direct load

    def __post_init__(self) -> None:
        self._clients: dict[str, HTTPClient] = {}  # plain HTTP: runtimes, and listings and metrics of engines
        self._engines: dict[str, EngineClient] = {}  # the engine API, whose failures are engine errors

    def _client(self, url: str) -> HTTPClient:
        client = self._clients.get(url)
        if client is None:
            client = self._clients[url] = HTTPClient(
                url, timeout=self.timeout, connect_timeout=3.0, max_idle=4, max_body=MAX_POD_REPLY
            )
        return client

    def _engine(self, pod: Pod) -> Engine:
        client = self._engines.get(pod.engine_url)
        if client is None:
            client = EngineClient(
                pod.engine_url, timeout=self.timeout, connect_timeout=3.0, max_idle=4, max_body=MAX_POD_REPLY
            )
            self._engines[pod.engine_url] = client
        try:
            return create_engine(pod.engine, client)
        except ValueError as exc:  # an unknown model.aibrix.ai/engine label
            raise LoadError(f"pod {pod.name}: {exc}", Outcome.FAILOVER) from None

    def via_runtime(self, pod: Pod) -> bool:
        return self.use_runtime and pod.runtime_url is not None

    async def _runtime_auth(self, pod: Pod, api_key: str | None) -> str | None:
        """The key this pod's runtime declares when it has one, else the engine key for the runtime to pass on."""
        if self.runtime_keys is None or pod.runtime_key is None:
            return _bearer(api_key)
        try:
            return _bearer(await self.runtime_keys.key_for(pod.namespace, pod.runtime_key) or api_key)
        except KeyUnavailable as exc:
            raise LoadError(f"pod {pod.name}: {exc}", Outcome.RETRY) from None

    def _refused(self, pod: Pod, response: Response) -> LoadError:
        """The LoadError for a runtime's refusal; after a 401 its key is read again next time (rotated)."""
        if response.status_code == 401 and self.runtime_keys is not None:
            self.runtime_keys.forget(pod.namespace, pod.runtime_key)
        kind = _error_type(response)
        outcome = Outcome.FAILOVER if kind == "RankTooHigh" else classify(response.status_code)
        message = f"runtime on {pod.name} answered {response.status_code}: {error_message(response)}"
        if outcome is Outcome.FATAL and kind is None:
            # not the runtime's error body: whatever answers on that port is no verdict on the adapter
            outcome = Outcome.FAILOVER
            message += " (not the runtime's error body: is the aibrix-runtime container on that port?)"
        return LoadError(message, outcome)

    async def load(self, pod: Pod, spec: AdapterSpec, credentials: dict[str, str] | None) -> Loaded:
        """Load the adapter on ``pod``; return the seconds it took and its rank if known. Raises LoadError.

        A pod already holding the name from another source (an artifact that changed while an unload failed, a
        copy loaded by hand) gets it unloaded and loaded again: success means the pod serves this artifact."""
        started, rank = time.monotonic(), None
        if self.via_runtime(pod):
            attempt = partial(self._load_via_runtime, pod, spec, credentials)
        elif credentials:
            raise LoadError(
                "credentialsSecretRef needs the runtime sidecar: engines cannot take storage credentials", Outcome.FATAL
            )
        elif spec.artifact_digest:
            raise LoadError("artifactDigest needs the runtime sidecar: engines cannot check a digest", Outcome.FATAL)
        else:
            path = engine_path(spec.artifact_url)
            rank = await self._check_direct(pod, spec.artifact_url)
            attempt = partial(self._load_direct, pod, spec, path)
        held, said = await attempt()
        if not held:
            await self.unload(pod, spec, timeout=self.timeout)
            held, said = await attempt()
            if not held:
                raise LoadError(f"pod {pod.name} still holds another {spec.name!r} after unloading it", Outcome.RETRY)
        return Loaded(time.monotonic() - started, said or rank)

    async def replace(self, pod: Pod, spec: AdapterSpec, credentials: dict[str, str] | None) -> Loaded:
        """Swap the pod's copy for the spec's artifact through its runtime (``replace``: the old version serves until
        the new one is in); a pod that no longer holds the adapter gets a plain load. The seconds it took."""
        started = time.monotonic()
        body = {**_runtime_body(spec, credentials), "replace": True}
        auth = await self._runtime_auth(pod, spec.api_key)
        response = await self._call(pod.runtime_url or "", "/v1/lora_adapter/load", body, auth)
        if response.status_code == 404 and "nothing to replace" in error_message(response):
            return await self.load(pod, spec, credentials)
        if not response.is_success:
            raise self._refused(pod, response)
        return Loaded(time.monotonic() - started, _rank(response))

    async def _load_via_runtime(
        self, pod: Pod, spec: AdapterSpec, credentials: dict[str, str] | None
    ) -> tuple[bool, int | None]:
        """(True, the rank it read) once the runtime holds this artifact; False when it holds the name from
        elsewhere (409)."""
        auth = await self._runtime_auth(pod, spec.api_key)
        response = await self._call(
            pod.runtime_url or "", "/v1/lora_adapter/load", _runtime_body(spec, credentials), auth
        )
        if response.status_code == 409:
            return False, None
        if not response.is_success:
            raise self._refused(pod, response)
        return True, _rank(response)

    async def _check_direct(self, pod: Pod, url: str) -> int | None:
        """The runtime's admission checks, on what the controller can read of an artifact the engine fetches
        itself (controller/direct_checks.py): a rule broken is FATAL, a rank above this pod's limit FAILOVER."""
        try:
            facts = await asyncio.to_thread(self.hub.check, url, pod.limits.max_rank)
        except RankTooHigh as exc:
            raise LoadError(f"pod {pod.name} cannot hold {redact(url)}: {exc.message}", Outcome.FAILOVER) from None
        except InvalidAdapter as exc:
            raise LoadError(f"{redact(url)}: {exc.message}", Outcome.FATAL) from None
        return facts.rank if facts is not None else None

    async def _load_direct(self, pod: Pod, spec: AdapterSpec, path: str) -> tuple[bool, int | None]:
        """True once the engine holds ``path`` under the name; False when it holds the name from another path."""
        engine = self._engine(pod)
        try:
            await engine.load_adapter(spec.name, path, auth=_bearer(spec.api_key))
        except AdapterAlreadyLoaded:
            current = await engine.adapter_path(spec.name, auth=_bearer(spec.api_key))
            return current is None or same_path(current, path), None
        except EngineError as exc:  # by status, so every kind of engine error is sorted the same way
            message = f"engine on {pod.name} refused: {exc.message}" if exc.status < 500 else exc.message
            if isinstance(exc, NotSupported):
                message = f"engine on {pod.name}: {exc.message}"
            outcome = Outcome.FAILOVER if exc.type == "RankTooHigh" else classify(exc.status)
            raise LoadError(message, outcome) from None
        return True, None

    async def unload(self, pod: Pod, spec: AdapterSpec, *, timeout: float) -> None:
        """Unload; an adapter the pod no longer holds is already unloaded. Raises LoadError."""
        if self.via_runtime(pod):
            auth = await self._runtime_auth(pod, spec.api_key)
            body = {"lora_name": spec.name}
            response = await self._call(pod.runtime_url or "", "/v1/lora_adapter/unload", body, auth, timeout=timeout)
            if not response.is_success and response.status_code != 404:
                raise self._refused(pod, response)
            return
        engine = self._engine(pod)
        try:
            async with asyncio.timeout(timeout):
                await engine.unload_adapter(spec.name, auth=_bearer(spec.api_key))
        except AdapterNotFound:
            return
        except TimeoutError:
            raise LoadError(
                f"engine on {pod.name} did not answer the unload within {timeout:g}s", Outcome.RETRY
            ) from None
        except EngineError as exc:
            raise LoadError(f"engine on {pod.name}: {exc.message}", Outcome.RETRY) from None

    async def loaded(self, pod: Pod, api_key: str | None, *, timeout: float = 2.0) -> set[str]:
        """Names of the models and adapters the pod serves now. Raises LoadError when it cannot tell."""
        if self.via_runtime(pod):
            url, auth = pod.runtime_url or "", await self._runtime_auth(pod, api_key)
        else:
            url, auth = pod.engine_url, _bearer(api_key)
        try:
            response = await self._client(url).request("GET", "/v1/models", auth=auth, timeout=timeout)
        except TransportError as exc:
            raise LoadError(f"pod {pod.name} at {exc.message}", Outcome.RETRY) from None
        if not response.is_success:
            raise LoadError(f"{url}/v1/models answered {response.status_code}", classify(response.status_code))
        try:
            return {str(card["id"]) for card in response.json()["data"] if isinstance(card, dict) and "id" in card}
        except (ValueError, KeyError, TypeError):
            raise LoadError(f"{url}/v1/models answered an unexpected body", Outcome.RETRY) from None

    async def metrics(self, pod: Pod, *, timeout: float = 2.0) -> str | None:
        """The pod's metrics text (the runtime's standardized view when it has one), or None when unreachable."""
        url = pod.runtime_url if self.via_runtime(pod) else pod.metrics_url
        try:
            response = await self._client(url or "").request("GET", "/metrics", timeout=timeout)
        except TransportError:
            return None
        return response.text if response.is_success else None

    async def _call(
        self, base: str, path: str, body: dict[str, Any], auth: str | None, *, timeout: float | None = None
    ) -> Response:
        try:
            return await self._client(base).request("POST", path, json=body, auth=auth, timeout=timeout)
        except TransportError as exc:  # refused, reset, unreachable, timed out
            raise LoadError(f"runtime at {exc.message}", Outcome.RETRY) from None

    def forget(self, pod: Pod) -> None:
        """Drop pooled connections to a pod that is gone."""
        for pool in (self._clients, self._engines):
            for url in (pod.engine_url, pod.runtime_url):
                client = pool.pop(url or "", None)
                if client is not None:
                    client.close_idle()

    async def aclose(self) -> None:
        for client in [*self._clients.values(), *self._engines.values()]:
            await client.aclose()
        self._clients.clear()
        self._engines.clear()


def _bearer(key: str | None) -> str | None:
    return bearer(key) if key else None


def _runtime_body(spec: AdapterSpec, credentials: dict[str, str] | None) -> dict[str, Any]:
    """A runtime load of the spec's artifact, with its digest, credentials and engine key."""
    body: dict[str, Any] = {"lora_name": spec.name, "artifact_url": spec.artifact_url}
    if spec.artifact_digest:
        body["artifact_digest"] = spec.artifact_digest
    if credentials:
        body["credentials"] = credentials
    if spec.api_key:
        body["additional_config"] = {"api-key": spec.api_key}
    return body
