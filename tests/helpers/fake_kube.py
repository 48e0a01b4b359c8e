"""A fake Kubernetes API server for tests: the REST protocol over HTTP, objects kept in memory.

It speaks enough of the real protocol for a real client library to run unchanged against it: list and watch
(resourceVersion, label and name selectors, 410 for versions too old), get, create (generateName), update,
patch (merge, strategic-as-merge, JSON patch with ``test``), the status subresource, deletion with finalizers and
deletionTimestamp, owner-reference garbage collection, 409 on a stale resourceVersion, and validation of custom
resources against their CRD's OpenAPI schema (read from ``deploy/``).

Run: ``python -m tests.helpers.fake_kube --port N [--crd deploy/crd.yaml]`` from the repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import itertools
import json
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.helpers.fake_kube_rules import (
    ApiError,
    fields_match,
    json_patch,
    labels_match,
    merge_patch,
    parse_selector,
    status,
)

Obj = dict[str, Any]


@dataclass(frozen=True, eq=False)
class Kind:
    kind: str
    api_version: str
    namespaced: bool = True
    status: bool = False  # has a status subresource
    schema: Obj | None = None
    status_default: Obj | None = None  # the schema's default for status, as the API server fills it in


KINDS: dict[tuple[str, str], Kind] = {
    ("v1", "pods"): Kind("Pod", "v1", status=True),
    ("v1", "services"): Kind("Service", "v1", status=True),
    ("v1", "secrets"): Kind("Secret", "v1"),
    ("v1", "events"): Kind("Event", "v1"),
    ("v1", "namespaces"): Kind("Namespace", "v1", namespaced=False),
    ("discovery.k8s.io/v1", "endpointslices"): Kind("EndpointSlice", "discovery.k8s.io/v1"),
    ("coordination.k8s.io/v1", "leases"): Kind("Lease", "coordination.k8s.io/v1"),
    ("events.k8s.io/v1", "events"): Kind("Event", "events.k8s.io/v1"),
}

HISTORY = 20000  # watch events kept for resuming from a resourceVersion


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the store ----------------------------------------------------------------------------------------------------


@dataclass
class Watcher:
    kind: Kind
    namespace: str | None
    selector: list[tuple[str, str, set[str]]]
    fields: str | None
    queue: asyncio.Queue[tuple[str, Obj] | None] = field(default_factory=asyncio.Queue)

    def wants(self, obj: Obj) -> bool:
        meta = obj["metadata"]
        return (
            (self.namespace is None or meta.get("namespace") == self.namespace)
            and labels_match(meta.get("labels") or {}, self.selector)
            and fields_match(obj, self.fields)
        )


class Store:
    def __init__(self) -> None:
        self.objects: dict[Kind, dict[tuple[str, str], Obj]] = {kind: {} for kind in KINDS.values()}
        self.rv = itertools.count(1000)
        self.last_rv = 999
        self.history: deque[tuple[int, Kind, str, Obj]] = deque(maxlen=HISTORY)
        self.watchers: list[Watcher] = []
        self.requests = 0
        self.by_kind: Counter[str] = Counter()  # "PATCH modeladapters/status": how many
        self.delay = 0.0  # seconds every request but a watch waits (POST /fault)

    def add_kind(self, kind: Kind) -> None:
        self.objects.setdefault(kind, {})

    def _bump(self) -> str:
        self.last_rv = next(self.rv)
        return str(self.last_rv)

    def _emit(self, kind: Kind, event: str, obj: Obj) -> None:
        self.history.append((self.last_rv, kind, event, obj))
        for watcher in self.watchers:
            if watcher.kind is kind and watcher.wants(obj):
                watcher.queue.put_nowait((event, obj))

    def list(self, kind: Kind, namespace: str | None, selector: str | None, fields: str | None) -> list[Obj]:
        requirements = parse_selector(selector)
        return [
            obj
            for (ns, _), obj in sorted(self.objects[kind].items())
            if (namespace is None or ns == namespace)
            and labels_match(obj["metadata"].get("labels") or {}, requirements)
            and fields_match(obj, fields)
        ]

    def get(self, kind: Kind, namespace: str, name: str) -> Obj:
        try:
            return self.objects[kind][(namespace, name)]
        except KeyError:
            raise ApiError(404, "NotFound", f'{kind.kind.lower()}s "{name}" not found') from None

    def create(self, kind: Kind, namespace: str, obj: Obj) -> Obj:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        name = meta.get("name")
        if not name:
            raise ApiError(422, "Invalid", "metadata.name: Required value")
        if (namespace, name) in self.objects[kind]:
            raise ApiError(409, "AlreadyExists", f'{kind.kind.lower()}s "{name}" already exists')
        validate(kind, obj)
        if kind.namespaced:
            meta["namespace"] = namespace
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1, resourceVersion=self._bump())
        meta.pop("deletionTimestamp", None)
        obj["kind"], obj["apiVersion"] = kind.kind, kind.api_version
        if kind.kind == "Secret" and "stringData" in obj:  # write-only: the server stores it as base64 data
            encoded = {k: base64.b64encode(str(v).encode()).decode() for k, v in obj.pop("stringData").items()}
            obj["data"] = {**(obj.get("data") or {}), **encoded}
        if kind.status and kind.schema is not None:
            obj.pop("status", None)  # custom resources with a status subresource ignore status on create
            if kind.status_default is not None:
                obj["status"] = copy.deepcopy(kind.status_default)
        self.objects[kind][(namespace, name)] = obj
        self._emit(kind, "ADDED", obj)
        return obj

    def update(self, kind: Kind, namespace: str, name: str, new: Obj, *, subresource: str | None) -> Obj:
        old = self.get(kind, namespace, name)
        given_rv = (new.get("metadata") or {}).get("resourceVersion")
        if given_rv and given_rv != old["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {kind.kind.lower()}s "{name}": the object has been modified; '
                "please apply your changes to the latest version and try again",
            )
        if subresource == "status":
            result = copy.deepcopy(old)
            result["status"] = copy.deepcopy(new.get("status"))
        else:
            result = copy.deepcopy(new)
            meta = result.setdefault("metadata", {})
            for key in ("uid", "creationTimestamp", "namespace", "name", "deletionTimestamp", "generation"):
                if key in old["metadata"]:
                    meta[key] = old["metadata"][key]
            if kind.status:
                result["status"] = copy.deepcopy(old.get("status"))
            if result.get("spec") != old.get("spec"):
                meta["generation"] = old["metadata"].get("generation", 1) + 1
            result["kind"], result["apiVersion"] = kind.kind, kind.api_version
            validate(kind, result)
        if result == old:
            return old  # a no-op write does not bump the resourceVersion, as on the real server
        result["metadata"]["resourceVersion"] = self._bump()
        if result["metadata"].get("deletionTimestamp") and not result["metadata"].get("finalizers"):
            return self._remove(kind, namespace, name, result)
        self.objects[kind][(namespace, name)] = result
        self._emit(kind, "MODIFIED", result)
        return result

    def delete(self, kind: Kind, namespace: str, name: str) -> Obj:
        obj = self.get(kind, namespace, name)
        if obj["metadata"].get("finalizers"):
            if obj["metadata"].get("deletionTimestamp"):
                return obj
            obj = copy.deepcopy(obj)
            obj["metadata"].update(deletionTimestamp=now(), deletionGracePeriodSeconds=0, resourceVersion=self._bump())
            self.objects[kind][(namespace, name)] = obj
            self._emit(kind, "MODIFIED", obj)
            return obj
        obj = copy.deepcopy(obj)
        if kind.kind == "Pod":  # graceful deletion: the real server marks a pod first (MODIFIED), then removes it
            obj["metadata"].update(deletionTimestamp=now(), deletionGracePeriodSeconds=0, resourceVersion=self._bump())
            self._emit(kind, "MODIFIED", obj)
            obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = self._bump()
        return self._remove(kind, namespace, name, obj)

    def _remove(self, kind: Kind, namespace: str, name: str, obj: Obj) -> Obj:
        del self.objects[kind][(namespace, name)]
        self._emit(kind, "DELETED", obj)
        uid = obj["metadata"]["uid"]
        for other_kind, objects in self.objects.items():  # garbage collection of dependents
            for (ns, other_name), other in list(objects.items()):
                owners = other["metadata"].get("ownerReferences") or []
                if ns == namespace and any(ref.get("uid") == uid for ref in owners):
                    self.delete(other_kind, ns, other_name)
        return obj


def validate(kind: Kind, obj: Obj) -> None:
    if kind.schema is None:
        return
    import jsonschema_rs

    body = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
    errors = [
        f"{'.'.join(str(p) for p in e.instance_path) or '<root>'}: {e.message}"
        for e in jsonschema_rs.validator_for(kind.schema).iter_errors(body)
    ]
    if errors:
        name = obj.get("metadata", {}).get("name")
        raise ApiError(422, "Invalid", f'{kind.kind} "{name}" is invalid: ' + "; ".join(errors))


def load_crd(path: str, store: Store) -> None:
    import yaml

    with open(path) as handle:
        for doc in yaml.safe_load_all(handle):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                schema = version["schema"]["openAPIV3Schema"]
                schema = {k: v for k, v in schema.items()}
                schema.get("properties", {}).pop("metadata", None)
                status_schema = schema.get("properties", {}).pop("status", None) or {}
                kind = Kind(
                    spec["names"]["kind"],
                    f"{spec['group']}/{version['name']}",
                    namespaced=spec["scope"] == "Namespaced",
                    status="status" in (version.get("subresources") or {}),
                    schema=schema,
                    status_default=status_schema.get("default"),
                )
                KINDS[(kind.api_version, spec["names"]["plural"])] = kind
                store.add_kind(kind)


# --- HTTP ---------------------------------------------------------------------------------------------------------

store = Store()


def _route(request: Request) -> tuple[Kind, str | None, str | None, str | None]:
    p = request.path_params
    api_version = p["version"] if "group" not in p else f"{p['group']}/{p['version']}"
    kind = KINDS.get((api_version, p["plural"]))
    if kind is None:
        raise ApiError(
            404, "NotFound", f"the server could not find the requested resource ({api_version} {p['plural']})"
        )
    namespace = p.get("namespace") if kind.namespaced else ""
    return kind, namespace, p.get("name"), p.get("sub")


async def _body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError:
        raise ApiError(400, "BadRequest", "request body is not JSON") from None


def _count(request: Request) -> None:
    store.requests += 1
    params = request.path_params
    what = params["plural"] + (f"/{params['sub']}" if "sub" in params else "")
    store.by_kind[f"{request.method} {what}"] += 1


async def collection(request: Request) -> Response:
    _count(request)
    try:
        kind, namespace, _, _ = _route(request)
        if request.method == "POST":
            if namespace is None:
                raise ApiError(405, "MethodNotAllowed", "create needs a namespace")
            await asyncio.sleep(store.delay)
            return JSONResponse(store.create(kind, namespace, await _body(request)), status_code=201)
        query = request.query_params
        if query.get("watch") in ("true", "1"):
            return await watch(kind, namespace, request)
        await asyncio.sleep(store.delay)
        items = store.list(kind, namespace, query.get("labelSelector"), query.get("fieldSelector"))
        return JSONResponse(
            {
                "kind": f"{kind.kind}List",
                "apiVersion": kind.api_version,
                "metadata": {"resourceVersion": str(store.last_rv)},
                "items": items,
            }
        )
    except ApiError as exc:
        return exc.response()


async def watch(kind: Kind, namespace: str | None, request: Request) -> Response:
    query = request.query_params
    watcher = Watcher(kind, namespace, parse_selector(query.get("labelSelector")), query.get("fieldSelector"))
    since = query.get("resourceVersion")
    backlog: list[tuple[str, Obj]] = []
    if not since or since == "0":
        backlog = [("ADDED", obj) for obj in store.list(kind, namespace, query.get("labelSelector"), None)]
    else:
        oldest = store.history[0][0] if store.history else store.last_rv
        if int(since) < oldest - 1 and len(store.history) == HISTORY:
            gone = status(410, "Expired", f"too old resource version: {since} ({oldest})")
            backlog = [("ERROR", gone)]
        else:
            backlog = [
                (event, obj)
                for rv, k, event, obj in store.history
                if k is kind and rv > int(since) and watcher.wants(obj)
            ]
    store.watchers.append(watcher)
    timeout = float(query.get("timeoutSeconds") or 1800)

    async def lines():
        try:
            for event, obj in backlog:
                yield json.dumps({"type": event, "object": obj}).encode() + b"\n"
            if backlog and backlog[0][0] == "ERROR":
                return
            deadline = asyncio.get_running_loop().time() + timeout
            while True:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    return
                try:
                    item = await asyncio.wait_for(watcher.queue.get(), remaining)
                except TimeoutError:
                    return
                if item is None:
                    return
                yield json.dumps({"type": item[0], "object": item[1]}).encode() + b"\n"
        finally:
            store.watchers.remove(watcher)

    return StreamingResponse(lines(), media_type="application/json")


async def member(request: Request) -> Response:
    _count(request)
    await asyncio.sleep(store.delay)
    try:
        kind, namespace, name, sub = _route(request)
        assert namespace is not None and name is not None
        if sub not in (None, "status") or (sub == "status" and not kind.status):
            raise ApiError(404, "NotFound", f"no subresource {sub!r}")
        if request.method == "GET":
            return JSONResponse(store.get(kind, namespace, name))
        if request.method == "DELETE":
            obj = store.delete(kind, namespace, name)
            return JSONResponse(obj)
        body = await _body(request)
        current = store.get(kind, namespace, name)
        if request.method == "PUT":
            new = body
        else:
            content_type = request.headers.get("content-type", "").split(";")[0].strip()
            if content_type == "application/json-patch+json":
                new = json_patch(current, body)
            elif content_type in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                new = merge_patch(copy.deepcopy(current), body)
                if not (body.get("metadata") or {}).get("resourceVersion"):
                    new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            else:
                raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {content_type!r}")
        return JSONResponse(store.update(kind, namespace, name, new, subresource=sub))
    except ApiError as exc:
        return exc.response()


async def stats(request: Request) -> Response:
    return JSONResponse({"requests": store.requests, "resourceVersion": store.last_rv, "byKind": store.by_kind})


async def fault(request: Request) -> Response:
    """POST {"delay_ms": N}: every request but a watch waits N ms first (an API server under load)."""
    store.delay = float((await request.json()).get("delay_ms", 0)) / 1000
    return JSONResponse({"delay_ms": store.delay * 1000})


_METHODS = ["GET", "PUT", "PATCH", "DELETE"]
routes = [
    Route("/stats", stats),
    Route("/fault", fault, methods=["POST"]),
    Route("/api/{version}/{plural}", collection, methods=["GET", "POST"]),
    Route("/api/{version}/namespaces/{namespace}/{plural}", collection, methods=["GET", "POST"]),
    Route("/api/{version}/namespaces/{namespace}/{plural}/{name}", member, methods=_METHODS),
    Route("/api/{version}/namespaces/{namespace}/{plural}/{name}/{sub}", member, methods=_METHODS),
    Route("/api/{version}/{plural}/{name}", member, methods=_METHODS),
    Route("/apis/{group}/{version}/{plural}", collection, methods=["GET", "POST"]),
    Route("/apis/{group}/{version}/namespaces/{namespace}/{plural}", collection, methods=["GET", "POST"]),
    Route("/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}", member, methods=_METHODS),
    Route("/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}/{sub}", member, methods=_METHODS),
]
app = Starlette(routes=routes)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--crd", action="append", default=[])
    args = parser.parse_args()
    for path in args.crd:
        load_crd(path, store)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", timeout_graceful_shutdown=1)


if __name__ == "__main__":
    main()
