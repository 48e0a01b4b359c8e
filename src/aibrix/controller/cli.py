"""``aibrix_controller``: run the ModelAdapter controller against the cluster of the kubeconfig or service account."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from aibrix import __version__
from aibrix.asgi import MAX_CONNECTIONS, READ_TIMEOUT

if TYPE_CHECKING:
    from aibrix.controller.manager import Controller, ControllerConfig
    from aibrix.controller.metrics import ControllerMetrics

log = logging.getLogger("aibrix.controller")


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {value!r}")


def _positive(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, not {value}")
    return number


def _address(value: str) -> tuple[str, int] | None:
    """``:8081``, ``127.0.0.1:8081`` or ``0`` (off), as controller-runtime's flags take them."""
    if value in ("0", ""):
        return None
    host, _, port = value.rpartition(":")
    if not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected [host]:port or 0, not {value!r}")
    return host or "0.0.0.0", int(port)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aibrix_controller", description="Run the ModelAdapter (LoRA) controller.")
    p.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: in-cluster, then $KUBECONFIG)")
    p.add_argument("--namespace", default=None, help="watch one namespace (default: all)")
    p.add_argument(
        "--enable-runtime-sidecar",
        nargs="?",
        const=True,
        default=True,
        type=_bool,
        help="load adapters through the pods' aibrix-runtime container: true (default) or false",
    )
    p.add_argument(
        "--leader-elect",
        nargs="?",
        const=True,
        default=True,
        type=_bool,
        help="act only while holding the leader lease: true (default) or false",
    )
    p.add_argument("--leader-election-id", default="aibrix-controller-manager")
    p.add_argument("--leader-election-namespace", default=os.environ.get("POD_NAMESPACE", "aibrix-system"))
    p.add_argument("--lease-duration", type=_positive, default=15.0)
    p.add_argument("--renew-deadline", type=_positive, default=10.0)
    p.add_argument("--retry-period", type=_positive, default=2.0)
    p.add_argument("--health-probe-bind-address", type=_address, default=_address(":8081"))
    p.add_argument("--metrics-bind-address", type=_address, default=_address(":8082"))
    p.add_argument(
        "--webhook-bind-address",
        type=_address,
        default=None,
        help="serve the sidecar injection webhook over HTTPS here, e.g. :9443 (default: off)",
    )
    p.add_argument(
        "--webhook-cert-dir",
        type=Path,
        default=Path("/tmp/k8s-webhook-server/serving-certs"),
        help="folder with the webhook's tls.crt and tls.key, re-read when they change",
    )
    p.add_argument(
        "--webhook-read-timeout",
        type=_positive,
        default=READ_TIMEOUT,
        help="seconds an API server has to send a whole review once it starts one",
    )
    p.add_argument(
        "--webhook-max-connections",
        type=int,
        default=MAX_CONNECTIONS,
        help="connections the webhook serves at once (503 beyond)",
    )
    p.add_argument(
        "--sidecar-runtime-image",
        default=f"aibrix/runtime:{__version__}",
        help="the injected aibrix-runtime image when a pod does not name one",
    )
    p.add_argument("--max-retries", type=int, default=5, help="load attempts per pod before failing over")
    p.add_argument("--retry-base-seconds", type=_positive, default=5.0, help="first backoff, doubled per retry")
    p.add_argument("--stability-seconds", type=float, default=5.0, help="how long a pod must be Ready first")
    p.add_argument("--resync-seconds", type=_positive, default=30.0, help="how often every adapter is checked")
    p.add_argument("--unload-timeout", type=_positive, default=5.0, help="per-pod unload timeout on deletion")
    p.add_argument("--deletion-timeout", type=_positive, default=30.0, help="longest a deletion waits on pods")
    p.add_argument("--workers", type=int, default=32, help="adapters reconciled at once")
    p.add_argument(
        "--balance-interval-seconds",
        type=_positive,
        default=2.0,
        help="how often pods' demand is sampled for schedulerName: balanced (moves are planned every third sample)",
    )
    p.add_argument(
        "--balance-threshold", type=float, default=0.2, help="a pod this far above the mean demand sheds adapters"
    )
    p.add_argument("--balance-moves", type=int, default=10, help="adapters moved per plan at most")
    p.add_argument(
        "--balance-half-life-seconds",
        type=_positive,
        default=30.0,
        help="how fast the demand estimate forgets: longer is steadier under sparse traffic, slower to follow a shift",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", default="text", choices=["text", "json"])
    return p


FIELDS = ("adapter", "pod", "pods", "phase", "attempt")


class JSONFormatter(logging.Formatter):
    """One JSON object per line, with the adapter, pod, phase and attempt a message is about as fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for field in FIELDS:
            if hasattr(record, field):
                entry[field] = getattr(record, field)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.max_retries < 1 or args.workers < 1 or args.webhook_max_connections < 1:
        parser().error("--max-retries, --workers and --webhook-max-connections must be at least 1")
    handler = logging.StreamHandler()
    handler.setFormatter(
        JSONFormatter()
        if args.log_format == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        pass


async def run(args: argparse.Namespace) -> None:
    try:
        from lightkube import KubeConfig
        from lightkube.core.exceptions import ConfigError
    except ImportError:
        print("aibrix_controller: the controller needs its extra: pip install 'aibrix[controller]'", file=sys.stderr)
        raise SystemExit(2) from None
    from aibrix.controller.api_client import api_client
    from aibrix.controller.manager import Controller
    from aibrix.controller.metrics import ControllerMetrics

    try:
        kubeconfig = KubeConfig.from_file(args.kubeconfig) if args.kubeconfig else KubeConfig.from_env()
    except (ConfigError, OSError) as exc:
        print(f"aibrix_controller: no Kubernetes configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    config = controller_config(args)
    metrics = ControllerMetrics()
    client = api_client(kubeconfig)
    controller = Controller(client, config, metrics)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    servers = serve_probes(args, controller, metrics)
    if args.webhook_bind_address:
        from aibrix.controller.webhook import serve_webhook

        servers.append(
            serve_webhook(
                args.webhook_bind_address,
                args.webhook_cert_dir,
                args.sidecar_runtime_image,
                metrics,
                args.webhook_read_timeout,
                args.webhook_max_connections,
            )
        )
    log.info(
        "aibrix controller %s starting (runtime sidecar %s, leader election %s)",
        config.identity,
        "on" if config.options.use_runtime else "off",
        "on" if config.leader_elect else "off",
    )
    try:
        await controller.run(stop)
    finally:
        for task in servers:
            task.cancel()
        await asyncio.gather(*servers, return_exceptions=True)
        await client.close()
    if not stop.is_set():
        log.error("leadership lost; exiting so a fresh process can compete again")
        raise SystemExit(1)


def controller_config(args: argparse.Namespace) -> ControllerConfig:
    from aibrix.controller.balancer import BalanceOptions
    from aibrix.controller.manager import ControllerConfig
    from aibrix.controller.options import Options

    options = Options(
        use_runtime=args.enable_runtime_sidecar,
        max_retries=args.max_retries,
        retry_base=args.retry_base_seconds,
        stability=args.stability_seconds,
        resync=args.resync_seconds,
        unload_timeout=args.unload_timeout,
        deletion_timeout=args.deletion_timeout,
    )
    balance = BalanceOptions(
        interval=args.balance_interval_seconds,
        threshold=args.balance_threshold,
        moves=args.balance_moves,
        half_life=args.balance_half_life_seconds,
    )
    return ControllerConfig(
        namespace=args.namespace,
        options=options,
        balance=balance,
        workers=args.workers,
        leader_elect=args.leader_elect,
        lease_name=args.leader_election_id,
        lease_namespace=args.leader_election_namespace,
        lease_duration=args.lease_duration,
        renew_deadline=args.renew_deadline,
        lease_retry=args.retry_period,
        identity=f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}",
    )


def serve_probes(
    args: argparse.Namespace, controller: Controller, metrics: ControllerMetrics
) -> list[asyncio.Task[None]]:
    """/healthz, /readyz and /metrics on the probe and metrics addresses (one server when they are the same)."""
    from aibrix.asgi import serve_in_background
    from aibrix.controller.probes import probe_app

    app = probe_app(
        metrics, healthy=lambda: True, ready=lambda: not controller.leading or controller.adapters.synced.is_set()
    )
    return [
        serve_in_background(app, address)
        for address in {args.health_probe_bind_address, args.metrics_bind_address} - {None}
    ]


if __name__ == "__main__":
    main()
