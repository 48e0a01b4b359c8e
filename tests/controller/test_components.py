"""Pure parts of the controller: spec checks, pod eligibility, schedulers, retry classification."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from aibrix.controller.loader import LoadError, Outcome, classify, engine_path
from aibrix.controller.pods import pod_from_object
from aibrix.controller.schedulers import UNKNOWN_LOAD, by_fewest_adapters, by_hash, load_of
from aibrix.controller.spec import SpecError, parse_spec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "metrics"


def adapter(name: str = "lora", **spec: object) -> dict:
    base = {"podSelector": {"matchLabels": {"app": "m"}}, "artifactURL": "s3://b/k"}
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": {**base, **spec}}


def pod(name: str, *, ready_since: str | None = "2025-01-01T00:00:00Z", **meta: object) -> dict:
    conditions = [{"type": "Ready", "status": "True", "lastTransitionTime": ready_since}] if ready_since else []
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": name,
            "labels": {"adapter.model.aibrix.ai/enabled": "true"},
            **meta,
        },
        "spec": {"containers": [{"name": "vllm", "ports": [{"containerPort": 8000}]}]},
        "status": {"phase": "Running", "podIP": "10.0.0.1", "conditions": conditions},
    }


@pytest.mark.parametrize(
    ("name", "spec", "complaint"),
    [
        ("1-lora", {}, "DNS-1035"),  # Service names must start with a letter
        ("lora\u200b", {}, "DNS-1035"),  # zero-width space
        ("lоra", {}, "DNS-1035"),  # Cyrillic o
        ("a.b", {}, "DNS-1035"),
        ("lora", {"artifactURL": "ftp://x/y"}, "scheme"),
        ("lora", {"artifactURL": "relative/path"}, "absolute path"),
        ("lora", {"replicas": 0}, "at least 1"),
        ("lora", {"replicas": True}, "at least 1"),
        ("lora", {"podSelector": {}}, "podSelector"),
        ("lora", {"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}, "needs values"),
        ("lora", {"schedulerName": "random"}, "schedulerName"),
        ("lora", {"artifactDigest": "sha256:ABC"}, "artifactDigest"),
        ("lora", {"artifactDigest": "md5:" + "0" * 32}, "artifactDigest"),
    ],
)
def test_bad_specs_are_refused_with_the_field_named(name: str, spec: dict, complaint: str) -> None:
    with pytest.raises(SpecError, match=complaint):
        parse_spec(adapter(name, **spec))


def test_selector_expressions() -> None:
    spec = parse_spec(
        adapter(
            podSelector={
                "matchLabels": {"app": "m"},
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["a", "b"]},
                    {"key": "canary", "operator": "DoesNotExist"},
                    {"key": "zone", "operator": "NotIn", "values": ["z"]},
                    {"key": "gpu", "operator": "Exists"},
                ],
            }
        )
    )
    assert spec.selector.matches({"app": "m", "tier": "a", "gpu": "h100"})
    assert not spec.selector.matches({"app": "m", "tier": "c", "gpu": "h100"})
    assert not spec.selector.matches({"app": "m", "tier": "a", "gpu": "h100", "canary": "1"})
    assert not spec.selector.matches({"app": "m", "tier": "a", "gpu": "h100", "zone": "z"})
    assert not spec.selector.matches({"app": "m", "tier": "a"})


def test_pod_eligibility_needs_stable_readiness_and_the_opt_in_label() -> None:
    ready = pod_from_object(pod("p"))
    assert ready.eligible(now=ready.ready_since + 5, stability=5)  # type: ignore[operator]
    assert not ready.eligible(now=ready.ready_since + 4.9, stability=5)  # type: ignore[operator]
    assert not pod_from_object(pod("p", ready_since=None)).eligible(now=1e10, stability=5)
    assert not pod_from_object(pod("p", deletionTimestamp="2025-01-01T00:00:00Z")).eligible(now=1e10, stability=5)
    assert not pod_from_object(pod("p", labels={})).eligible(now=1e10, stability=5)
    assert pod_from_object(pod("p")).runtime_port is None  # no aibrix-runtime container: direct loading


def test_schedulers_spread_and_are_stable() -> None:
    pods = [pod_from_object(pod(f"p{i}")) for i in range(4)]
    assert by_hash("a", pods, 2) == by_hash("a", list(reversed(pods)), 2)  # order of the cache does not matter
    first = {by_hash(f"adapter-{i}", pods, 1)[0].name for i in range(40)}
    assert first == {"p0", "p1", "p2", "p3"}
    counts = {"p0": 3, "p1": 0, "p2": 1, "p3": 0}
    assert [p.name for p in by_fewest_adapters("a", pods, 3, counts.__getitem__)][:2] in (["p1", "p3"], ["p3", "p1"])


@pytest.mark.parametrize("engine, fixture", [("vllm", "vllm_v1_issue318.txt"), ("sglang", "sglang.txt")])
def test_load_is_read_from_standardized_metrics(engine: str, fixture: str) -> None:
    running_waiting, cache = load_of(engine, (FIXTURES / fixture).read_text())
    assert running_waiting >= 0 and 0 <= cache <= 1
    assert load_of(engine, None) == UNKNOWN_LOAD
    assert load_of(engine, "garbage") == UNKNOWN_LOAD


def test_error_classes() -> None:
    assert classify(401) is Outcome.FATAL and classify(404) is Outcome.FATAL
    assert classify(503) is Outcome.RETRY and classify(502) is Outcome.RETRY and classify(429) is Outcome.RETRY
    assert classify(507) is Outcome.FAILOVER and classify(501) is Outcome.FAILOVER
    assert engine_path("huggingface://org/name") == "org/name"
    assert engine_path("/models/x") == "/models/x"
    with pytest.raises(LoadError) as caught:
        engine_path("s3://bucket/key?X-Amz-Signature=secret")
    assert caught.value.outcome is Outcome.FATAL and "secret" not in caught.value.message


def test_an_unknown_engine_label_fails_over_rather_than_crashing() -> None:
    import asyncio

    from aibrix.controller.loader import Loader

    labels = {"adapter.model.aibrix.ai/enabled": "true", "model.aibrix.ai/engine": "mystery"}
    target = pod_from_object(pod("p", labels=labels))
    with pytest.raises(LoadError) as caught:
        asyncio.run(Loader(use_runtime=False).load(target, parse_spec(adapter(artifactURL="/m")), None))
    assert caught.value.outcome is Outcome.FAILOVER and "mystery" in caught.value.message


def test_a_listing_in_flight_during_a_load_does_not_lose_the_adapter() -> None:
    import asyncio

    from aibrix.controller.served import ServedIndex

    class SlowListing:
        def __init__(self) -> None:
            self.release = asyncio.Event()

        async def loaded(self, pod: object, api_key: object) -> set[str]:
            await self.release.wait()
            return {"base-model"}  # asked before the load finished: the new adapter is not in it

    async def scenario() -> tuple[set[str] | None, set[str] | None]:
        listing = SlowListing()
        index = ServedIndex(listing, ttl=0.0)  # type: ignore[arg-type]
        target = pod_from_object(pod("p"))
        pending = asyncio.ensure_future(index.names(target, None))
        await asyncio.sleep(0.01)  # the listing request is out
        index.add(target, "fresh-lora")  # the load finishes while the listing is on its way
        listing.release.set()
        during = await pending
        after = await index.names(target, None)  # asked after the load: its word stands
        return during, after

    during, after = asyncio.run(scenario())
    assert during == {"base-model", "fresh-lora"}
    assert after == {"base-model"}


def test_an_object_whose_last_finalizer_we_removed_is_not_kept_after_its_deleted_event() -> None:
    """The DELETED event can arrive before the reply of the PATCH that removed the last finalizer; storing that
    reply would bring the dead adapter back into the cache and reconcile it at every resync."""
    from aibrix.controller.informer import Informer

    informer = Informer(None, object, "default", lambda event, old, new: None)  # type: ignore[arg-type]
    meta = {"name": "gone", "namespace": "default", "resourceVersion": "7", "deletionTimestamp": "2026-12-01T00:00:00Z"}
    dying = {"metadata": {**meta, "finalizers": ["adapter.model.aibrix.ai/finalizer"]}}
    informer._apply("ADDED", dying)
    reply = {"metadata": {**dying["metadata"], "resourceVersion": "8", "finalizers": []}}
    informer._apply("DELETED", reply)
    informer.store(reply)
    assert ("default", "gone") not in informer.objects


def test_a_failing_object_is_retried_ever_less_often_and_a_success_starts_over() -> None:
    """Seen on a real API server: an EndpointSlice it refused (422) was retried every 50 ms, forever."""
    from aibrix.controller.manager import Backoff

    backoff = Backoff(cap=60.0)
    key = ("default", "refused")
    delays = [backoff.failed(key, 0.5) for _ in range(10)]
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0]
    assert delays[-1] == 60.0 and all(a <= b for a, b in zip(delays, delays[1:], strict=False))
    assert backoff.failed(("default", "other"), 0.05) == 0.05  # per object
    backoff.succeeded(key)
    assert backoff.failed(key, 0.5) == 0.5


def test_a_lease_renewed_by_a_holder_with_a_skewed_clock_is_never_taken_over() -> None:
    """Expiry is judged by when this process saw the record change, not by the holder's renewTime against the
    local clock: a holder whose clock runs an hour behind still holds its lease while it renews."""
    import asyncio
    from datetime import UTC, datetime, timedelta

    from aibrix.controller.leader import LeaderElector

    class OneLease:
        def __init__(self) -> None:
            self.renewals = 0
            self.frozen = False
            self.replaced = 0
            self.skewed = datetime.now(UTC) - timedelta(hours=1)

        async def get(self, resource: object, name: str, namespace: str) -> dict:
            if not self.frozen:
                self.renewals += 1  # the holder keeps renewing, its clock an hour behind
            renewed = self.skewed + timedelta(seconds=self.renewals)
            spec = {
                "holderIdentity": "other",
                "leaseDurationSeconds": 1,
                "leaseTransitions": 0,
                "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            }
            meta = {"name": name, "namespace": namespace, "resourceVersion": "1"}
            return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": spec}

        async def replace(self, obj: object) -> object:
            self.replaced += 1
            return obj

    async def go() -> None:
        lease = OneLease()
        elector = LeaderElector(lease, "l", "ns", "me", duration=1.0)  # type: ignore[arg-type]
        for _ in range(6):  # 1.5 s of a live holder: never taken over
            assert await elector._try() is False
            await asyncio.sleep(0.25)
        lease.frozen = True  # the holder stops renewing: after a lease duration of silence, it is taken over
        assert await elector._try() is False
        await asyncio.sleep(1.1)
        assert await elector._try() is True
        assert lease.replaced == 1

    asyncio.run(go())


@pytest.mark.parametrize("via_runtime", [True, False])
def test_a_pod_that_cannot_be_reached_is_named_as_what_it_is(via_runtime: bool) -> None:
    """A runtime's transport failure reads as the runtime's, an engine's as the engine's (no text rewriting)."""
    import asyncio
    import dataclasses

    from aibrix.controller.loader import Loader
    from tests.helpers.procs import free_port

    port = free_port()  # this worker's own block: nothing listens there, so connections are refused
    target = dataclasses.replace(
        pod_from_object(pod("p")), ip="127.0.0.1", engine_port=port, runtime_port=port if via_runtime else None
    )
    with pytest.raises(LoadError) as caught:
        asyncio.run(Loader(use_runtime=via_runtime).load(target, parse_spec(adapter(artifactURL="/m")), None))
    who = "runtime" if via_runtime else "engine"
    assert caught.value.message.startswith(f"{who} at http://127.0.0.1:{port} is unreachable"), caught.value.message
    assert caught.value.outcome is Outcome.RETRY


def test_a_condition_message_built_from_engine_errors_is_capped() -> None:
    from aibrix.controller.status import set_condition
    from aibrix.errors import MAX_ERROR_TEXT

    conditions: list = []
    set_condition(conditions, "Ready", "False", "LoadFailed", "pod-a: " + "e" * 40_000, 1)
    set_condition(conditions, "Bound", "False", "x", "y", 1)
    set_condition(conditions, "Ready", "False", "LoadFailed", "pod-b: " + "e" * 40_000, 2)
    assert all(len(c["message"]) <= MAX_ERROR_TEXT + 40 for c in conditions)


def test_a_runtime_key_goes_only_to_the_pod_that_declares_it_and_is_read_where_it_says() -> None:
    """No cluster-wide key: each pod's runtime gets the key its own spec names (literal or Secret), or none."""
    from aibrix.controller.loader import Loader, LoadError
    from aibrix.controller.pods import pod_from_object
    from aibrix.controller.runtime_keys import RuntimeKeys
    from tests.helpers.payload_server import PayloadServer

    secrets = {("team-a", "aibrix-runtime-key"): {"api-key": "key-a"}}
    reads: list[tuple[str, str]] = []

    class Missing(Exception):
        status = type("S", (), {"code": 404})()

    async def read_secret(namespace: str, name: str) -> dict[str, str]:
        reads.append((namespace, name))
        if (namespace, name) not in secrets:
            raise Missing()
        return secrets[(namespace, name)]

    def pod(namespace: str, port: int, env: list | None) -> object:
        runtime = {"name": "aibrix-runtime", "ports": [{"containerPort": port}], **({"env": env} if env else {})}
        return pod_from_object(
            {
                "metadata": {"name": f"p-{namespace}", "namespace": namespace},
                "spec": {"containers": [{"name": "vllm"}, runtime]},
                "status": {"podIP": "127.0.0.1"},
            }
        )

    def ref(optional: bool) -> list:
        key = {"name": "aibrix-runtime-key", "key": "api-key", "optional": optional}
        return [{"name": "AIBRIX_RUNTIME_API_KEY", "valueFrom": {"secretKeyRef": key}}]

    with PayloadServer({"/v1/models": b'{"data": []}'}) as runtime:
        port = int(runtime.url.rsplit(":", 1)[1])
        loader = Loader(runtime_keys=RuntimeKeys(read_secret))

        async def seen(target: object, engine_key: str | None = None) -> str | None:
            await loader.loaded(target, engine_key)  # type: ignore[arg-type]
            return runtime.authorizations[-1]

        async def go() -> None:
            assert await seen(pod("team-a", port, ref(True))) == "Bearer key-a"
            assert await seen(pod("team-b", port, ref(True)), "engine-key") == "Bearer engine-key"  # optional, absent
            assert await seen(pod("team-c", port, None)) is None  # declares nothing: gets nothing
            literal = [{"name": "AIBRIX_RUNTIME_API_KEY", "value": "literal-key"}]
            assert await seen(pod("team-c", port, literal)) == "Bearer literal-key"
            with pytest.raises(LoadError, match="does not exist"):
                await loader.loaded(pod("team-d", port, ref(False)), None)  # type: ignore[arg-type]
            assert reads.count(("team-a", "aibrix-runtime-key")) == 1  # cached
            await loader.aclose()

        asyncio.run(go())
    assert "key-a" not in [a for a in runtime.authorizations[1:] if a]


def test_a_pods_metrics_are_read_where_its_metric_port_label_says() -> None:
    from aibrix.controller.pods import pod_from_object

    plain = pod_from_object(pod("p"))
    assert plain.metrics_url == plain.engine_url == "http://10.0.0.1:8000"
    labelled = pod_from_object(
        pod("p", labels={"adapter.model.aibrix.ai/enabled": "true", "model.aibrix.ai/metric-port": "9400"})
    )
    assert labelled.metrics_url == "http://10.0.0.1:9400"


@pytest.mark.parametrize(
    "status, body, outcome",
    [
        (404, {"error": {"type": "ArtifactNotFound", "message": "no such object"}}, Outcome.FATAL),
        (422, {"error": {"type": "RankTooHigh", "message": "rank 64 > 8"}}, Outcome.FAILOVER),
        (404, {"detail": "Not Found"}, Outcome.FAILOVER),  # another server on the runtime's port
        (400, "<html>bad request</html>", Outcome.FAILOVER),
        (503, {"detail": "busy"}, Outcome.RETRY),
    ],
)
def test_only_the_runtimes_own_refusal_fails_an_adapter(status: int, body: object, outcome: Outcome) -> None:
    """A refusal in the runtime's error body is a verdict on the adapter; a 4xx in any other body comes from
    something else on that port (seen on the real API server bench: a port another process took), and the adapter
    moves on to another pod instead of failing."""
    import httpx

    from aibrix.controller.loader import Loader

    answer = httpx.Response(status, json=body) if isinstance(body, dict) else httpx.Response(status, text=str(body))
    error = Loader()._refused(pod_from_object(pod("p")), answer)
    assert error.outcome is outcome, error.message


def test_a_leader_whose_api_server_goes_away_before_its_caches_sync_gives_the_lease_up() -> None:
    """The lease is renewed while the caches fill: a leader whose lists never finish (the API server went away
    right after it took the lease) stops within its renew deadline instead of holding the lease forever."""
    import asyncio

    from aibrix.controller.manager import Controller, ControllerConfig
    from aibrix.controller.metrics import ControllerMetrics

    class Unreachable:
        def __init__(self) -> None:
            self.gone = False
            self.never = asyncio.Event()

        async def get(self, resource: object, name: str, namespace: str) -> dict:
            if self.gone:
                raise ConnectionError("the API server went away")
            meta = {"name": name, "namespace": namespace, "resourceVersion": "1"}
            return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": {}}

        async def replace(self, obj: object) -> object:
            self.gone = True  # the lease is taken; everything after it fails
            return obj

        def list(self, *args: object, **kwargs: object) -> Unreachable:
            return self

        def __aiter__(self) -> Unreachable:
            return self

        async def __anext__(self) -> object:
            await self.never.wait()  # a list that never answers
            raise StopAsyncIteration

    async def go() -> float:
        config = ControllerConfig(renew_deadline=0.5, lease_retry=0.1, identity="me")
        controller = Controller(Unreachable(), config, ControllerMetrics())  # type: ignore[arg-type]
        started = asyncio.get_running_loop().time()
        async with asyncio.timeout(5):
            await controller.run(asyncio.Event())
        return asyncio.get_running_loop().time() - started

    assert asyncio.run(go()) < 2.0


def test_adapters_short_of_slots_for_more_replicas_wake_when_no_first_replica_waits_any_more() -> None:
    """Slots are kept for adapters waiting for a first replica; when the last of them stops waiting, those kept
    from extra replicas are woken at once instead of at the next resync."""
    from aibrix.controller.metrics import ControllerMetrics
    from aibrix.controller.placements import Placements

    placements = Placements(ControllerMetrics())
    assert placements.short_of_slots(("ns", "a"), True, True, None) == []  # one replica, short of slots for more
    assert placements.short_of_slots(("ns", "w1"), True, False, 8) == []
    assert placements.short_of_slots(("ns", "w2"), True, False, None) == []
    assert placements.short_of_slots(("other", "w3"), True, False, None) == []  # another namespace keeps its own slots
    assert placements.short_of_slots(("ns", "w1"), False, False, 8) == []  # w2 still waits
    assert placements.short_of_slots(("ns", "w2"), False, False, None) == [("ns", "a")]
    assert placements.short_of_slots(("ns", "w2"), False, False, None) == []  # once, when it changes
    placements.forget(("ns", "a"))
    assert placements.held_back_keys("ns") == []


def test_events_go_out_one_at_a_time_while_adapters_wait_to_be_reconciled() -> None:
    """Status before the record of it: while the work queue holds adapters, one Event is in flight; once it is
    empty, several are, and every Event queued is posted."""
    from aibrix.controller.events import SENDERS, EventRecorder
    from aibrix.controller.manager import WorkQueue

    class Client:
        def __init__(self) -> None:
            self.in_flight, self.most, self.posted = 0, 0, 0

        async def create(self, obj: object) -> None:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            await asyncio.sleep(0.01)
            self.in_flight -= 1
            self.posted += 1

    async def scenario() -> tuple[int, int, int]:
        client, queue = Client(), WorkQueue()
        recorder = EventRecorder(client, "test")  # type: ignore[arg-type]
        recorder.calm = queue.idle
        queue.add(("default", "a"))
        adapter = {"metadata": {"name": "a", "namespace": "default", "uid": "u"}}
        for i in range(20):
            recorder.record(adapter, "Normal", "Scheduled", f"event {i}")
        await asyncio.sleep(0.1)
        busy = client.most
        key = await queue.get()
        queue.done(key)  # nothing left to reconcile
        for _ in range(100):
            if client.posted == 20:
                break
            await asyncio.sleep(0.01)
        return busy, client.most, client.posted

    busy, calm, posted = asyncio.run(scenario())
    assert (busy, calm, posted) == (1, SENDERS, 20)
