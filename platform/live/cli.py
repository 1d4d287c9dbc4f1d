"""`cangtwin serve CONFIG`: the edges and the cloud of a deployment as one asyncio process (or any part).

`--edge SITE` (repeatable) runs only those edges, `--cloud` only the cloud (one worker, or one of
several with `cloud.scale_out`), so each can be its own process, restarted or killed on its own.
`--api-port` (or `api.port`) serves the bank API on the cloud's own event loop, over the cloud's
live state, with the evidence ledger of `ledger:` (the parties' keys from the deployment file).
`cangtwin broker-config CONFIG DIR` writes the Mosquitto files (logins, ACLs) for the deployment.
Bad input is one line naming file, line and field, exit status 2; a broker or store that cannot
be reached is one line too, exit status 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import sys
from pathlib import Path

import click
import uvicorn
from sqlalchemy.exc import SQLAlchemyError

from cangtwin.platform.api.access import TokenRegistry
from cangtwin.platform.api.app import create_app
from cangtwin.platform.api.audit import AuditLog
from cangtwin.platform.clock import AsyncioClock
from cangtwin.platform.cloud.evidence import EvidenceRecorder
from cangtwin.platform.config_file import InputError
from cangtwin.platform.ledger.log import LogBusyError, LogCorruptError
from cangtwin.platform.live.broker import BrokerConfigError, CLOUD_USER, edge_user, logins, write_broker_files
from cangtwin.platform.live.cloud_node import CloudNode
from cangtwin.platform.live.config import Deployment, DilatedClock, load_deployment
from cangtwin.platform.live.edge_node import LIVE_TIMING, EdgeNode
from cangtwin.platform.live.mqtt import MqttRefused
from cangtwin.platform.live.store import CloudStore, StoreError
from cangtwin.platform.live.webhook import WebhookSink
from cangtwin.platform.edge.outbox import OutboxError


def _fail(message: str, status: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(status)


class ApiStartError(Exception):
    """The bank API could not start: its access file, audit log or port."""


class _EmbeddedServer(uvicorn.Server):
    """uvicorn on serve's own loop: serve owns SIGINT/SIGTERM and stops it with `should_exit`."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


def _listen(host: str, port: int) -> socket.socket:
    try:
        sock = socket.create_server((host, port), reuse_port=False)
    except OSError as exc:
        raise ApiStartError(f"bank API: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


async def _serve(deployment: Deployment, sites: list[str], run_cloud: bool, worker: str,
                 api: tuple[int, TokenRegistry] | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    speed = deployment.clock.speed
    clock = DilatedClock(deployment.clock, loop) if deployment.clock.start is not None else AsyncioClock(loop)
    # Resends and batching are about the network, so they keep their wall-time meaning at any speed.
    edge_timing = dataclasses.replace(LIVE_TIMING, linger_s=LIVE_TIMING.linger_s * speed,
                                      ack_timeout_s=LIVE_TIMING.ack_timeout_s * speed)
    nodes: list = []
    cloud: CloudNode | None = None
    evidence: EvidenceRecorder | None = None
    server: _EmbeddedServer | None = None
    served: asyncio.Task | None = None
    hooks: WebhookSink | None = None
    try:
        if run_cloud:
            options = {}
            if deployment.ledger is not None:
                evidence = EvidenceRecorder(clock, deployment.ledger.path, deployment.ledger.parties)
                options["evidence"] = evidence
            store = CloudStore(deployment.database)
            cloud = CloudNode(worker, deployment.cloud_mqtt, store, sorted(deployment.sites), deployment.ruleset,
                              seed_book=deployment.book, scale_out=deployment.scale_out, tap=_log_ownership,
                              clock=clock, **options)
            nodes.append(cloud)
            await cloud.start()
            if deployment.webhooks:
                hooks = WebhookSink(cloud.cloud, list(deployment.webhooks))
                await hooks.start()
                cloud.on_alerts = hooks.publish
        for name in sites:
            site = deployment.sites[name]
            edge = EdgeNode(name, site.mqtt, site.devices, deployment.models, deployment.ruleset,
                            site.outbox_path, site.outbox, device_mqtt=site.device_mqtt, tap=_log_edge,
                            timing=edge_timing, clock=clock, geometry=site.geometry)
            nodes.append(edge)
            await edge.start()
        api_note = ""
        if cloud is not None and api is not None:
            server, sock = _api_server(deployment, cloud, evidence, *api)
            served = asyncio.ensure_future(server.serve(sockets=[sock]))
            while not server.started and not served.done():
                await asyncio.sleep(0.01)
            if served.done():
                served.result()
                raise ApiStartError("bank API: the server stopped during start-up")
            host, port = sock.getsockname()[:2]
            api_note = f" api=http://{host}:{port}"
        hook_note = f" webhooks={len(deployment.webhooks)}" if hooks is not None else ""
        click.echo(f"serving: cloud={'worker ' + worker if cloud else 'no'} edges={','.join(sites) or 'none'}"
                   f"{api_note}{hook_note}", err=True)
        waits = [asyncio.ensure_future(stop.wait())]
        if cloud is not None:
            waits.append(cloud.failed)
        if served is not None:
            waits.append(served)
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if cloud is not None and cloud.failed in done:
            cloud.failed.result()
        if served is not None and served in done:
            served.result()
            raise ApiStartError("bank API: the server stopped")
    finally:
        if server is not None:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(served, 5.0)
        for node in reversed(nodes):
            node.close()
        if hooks is not None:
            await hooks.close()
        if evidence is not None:
            evidence.close()


def _api_server(deployment: Deployment, cloud: CloudNode, evidence: EvidenceRecorder | None,
                port: int, access: TokenRegistry) -> tuple[_EmbeddedServer, socket.socket]:
    """The bank API over this cloud, on this loop (its handlers touch the cloud without awaiting)."""
    api = deployment.api
    try:
        audit = AuditLog.open(api.audit_url)
    except SQLAlchemyError as exc:
        raise ApiStartError(f"bank API: audit log {api.audit_url}: {str(exc).splitlines()[0]}") from None
    app = create_app(cloud.cloud, access, audit, evidence=evidence, on_write=cloud.commit_changes)
    sock = _listen(api.host, port)
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    return _EmbeddedServer(config), sock


def _log_ownership(kind: str, record: object) -> None:
    """Operators see which worker holds which warehouse, and every hand-over."""
    if kind in ("live.owned", "live.released"):
        verb = "owns" if kind == "live.owned" else "released"
        click.echo(f"worker {record['worker']} {verb} {record['site']}", err=True)


def _log_edge(kind: str, record: object) -> None:
    """What the keeper's console shows: edge alerts at once (even offline), and when the book arrived."""
    if kind == "edge.alert":
        click.echo(f"edge {record.site} alert {record.id} {record.rule} {','.join(record.targets)}", err=True)
    elif kind == "edge.book-sync":
        click.echo(f"edge {record.site} holds book version {record.version}", err=True)


@click.command("serve")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--edge", "edges", multiple=True, metavar="SITE", help="Run this site's edge (repeatable).")
@click.option("--cloud", "run_cloud", is_flag=True, help="Run the cloud (the default when no --edge is given).")
@click.option("--worker", default=None, help="This cloud worker's id (default: host-pid).")
@click.option("--api-port", type=click.IntRange(0, 65535), default=None,
              help="Serve the bank API on this port (0: any free one), beside the cloud; "
                   "default: the deployment's api.port, if any.")
def serve(config: Path, edges: tuple[str, ...], run_cloud: bool, worker: str | None, api_port: int | None) -> None:
    """Run the platform over MQTT and SQL in wall time, as the deployment file CONFIG describes."""
    try:
        deployment = load_deployment(config)
    except InputError as err:
        _fail(str(err), 2)
    unknown = sorted(set(edges) - set(deployment.sites))
    if unknown:
        _fail(f"{config}: sites: no site {unknown[0]!r} (have: {', '.join(sorted(deployment.sites))})", 2)
    sites = list(edges) if edges else ([] if run_cloud else sorted(deployment.sites))
    run_cloud = run_cloud or not edges
    if api_port is None and deployment.api is not None:
        api_port = deployment.api.port
    if api_port is not None and deployment.api is None:
        _fail(f"{config}: api: --api-port needs an `api:` section naming the access file", 2)
    if api_port is not None and not run_cloud:
        _fail("--api-port: the bank API runs beside the cloud; add --cloud", 2)
    api = None
    if api_port is not None:
        try:
            api = (api_port, TokenRegistry.from_file(deployment.api.access))
        except InputError as err:
            _fail(str(err), 2)
    try:
        asyncio.run(_serve(deployment, sites, run_cloud, worker or f"{socket.gethostname()}-{os.getpid()}", api))
    except (MqttRefused, StoreError, OutboxError, ApiStartError, LogBusyError, LogCorruptError) as err:
        _fail(str(err), 1)


@click.command("broker-config")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--monitor-password", default=None, help="Also a `monitor` login that may read $SYS only.")
def broker_config(config: Path, out_dir: Path, monitor_password: str | None) -> None:
    """Write mosquitto.conf, the password file and the ACL for the deployment CONFIG into OUT_DIR."""
    try:
        deployment = load_deployment(config)
    except InputError as err:
        _fail(str(err), 2)
    if deployment.cloud_mqtt.username != CLOUD_USER or not deployment.cloud_mqtt.password:
        _fail(f"{config}: cloud.login: needs username {CLOUD_USER!r} and a password", 2)
    sites = {}
    for name, site in deployment.sites.items():
        if site.mqtt.username != edge_user(name) or not site.mqtt.password:
            _fail(f"{config}: sites: site {name!r}: login needs username {edge_user(name)!r} and a password", 2)
        missing = sorted(set(site.devices) - set(site.device_passwords))
        if missing:
            _fail(f"{config}: sites: site {name!r}: device {missing[0]!r} has no password", 2)
        sites[name] = (site.mqtt.password, site.device_passwords)
    try:
        conf = write_broker_files(out_dir, deployment.broker.port,
                                  logins(sites, deployment.cloud_mqtt.password, monitor_password))
    except BrokerConfigError as err:
        _fail(str(err), 1)
    click.echo(f"wrote {conf}; start it with: mosquitto -c {conf}")
