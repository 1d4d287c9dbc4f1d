"""`cangtwin serve CONFIG`: the edges and the cloud of a deployment as one asyncio process (or any part).

`--edge SITE` (repeatable) runs only those edges, `--cloud` only the cloud (one worker, or one of
several with `cloud.scale_out`), so each can be its own process, restarted or killed on its own.
`cangtwin broker-config CONFIG DIR` writes the Mosquitto files (logins, ACLs) for the deployment.
Bad input is one line naming file, line and field, exit status 2; a broker or store that cannot
be reached is one line too, exit status 1.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import click

from cangtwin.platform.config_file import InputError
from cangtwin.platform.live.broker import BrokerConfigError, CLOUD_USER, edge_user, logins, write_broker_files
from cangtwin.platform.live.cloud_node import CloudNode
from cangtwin.platform.live.config import Deployment, load_deployment
from cangtwin.platform.live.edge_node import EdgeNode
from cangtwin.platform.live.mqtt import MqttRefused
from cangtwin.platform.live.store import CloudStore, StoreError
from cangtwin.platform.edge.outbox import OutboxError


def _fail(message: str, status: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(status)


async def _serve(deployment: Deployment, sites: list[str], run_cloud: bool, worker: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    nodes: list = []
    cloud: CloudNode | None = None
    try:
        if run_cloud:
            store = CloudStore(deployment.database)
            cloud = CloudNode(worker, deployment.cloud_mqtt, store, sorted(deployment.sites), deployment.ruleset,
                              seed_book=deployment.book, scale_out=deployment.scale_out, tap=_log_ownership)
            nodes.append(cloud)
            await cloud.start()
        for name in sites:
            site = deployment.sites[name]
            edge = EdgeNode(name, site.mqtt, site.devices, deployment.models, deployment.ruleset,
                            site.outbox_path, site.outbox, device_mqtt=site.device_mqtt, tap=_log_edge)
            nodes.append(edge)
            await edge.start()
        click.echo(f"serving: cloud={'worker ' + worker if cloud else 'no'} edges={','.join(sites) or 'none'}",
                   err=True)
        waits = [asyncio.ensure_future(stop.wait())]
        if cloud is not None:
            waits.append(cloud.failed)
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if cloud is not None and cloud.failed in done:
            cloud.failed.result()
    finally:
        for node in reversed(nodes):
            node.close()


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
def serve(config: Path, edges: tuple[str, ...], run_cloud: bool, worker: str | None) -> None:
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
    try:
        asyncio.run(_serve(deployment, sites, run_cloud, worker or f"{socket.gethostname()}-{os.getpid()}"))
    except (MqttRefused, StoreError, OutboxError) as err:
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
