"""One warehouse's share of a run: its world, warehouse, devices, device link, edge and WAN links.

A run has one rig per warehouse, all in one SimPy environment, talking to one cloud. A rig of
a multi-warehouse site draws its random numbers from streams named `<warehouse>/<stream>`, so
each warehouse is an independent replication of its site; a one-warehouse run uses the run's
streams as they are, and so its event log is the same as it always was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import simpy
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cangtwin.devices.device import Device
from cangtwin.devices.fleet import build_fleet
from cangtwin.platform.clock import Clock
from cangtwin.platform.cloud.service import CloudService
from cangtwin.platform.edge.auth import DeviceRecord
from cangtwin.platform.edge.outbox import Outbox, OutboxConfig
from cangtwin.platform.edge.service import EdgeService
from cangtwin.platform.rules.ruleset import RuleSet
from cangtwin.platform.site_geometry import SiteGeometry
from cangtwin.platform.thing_model import ThingModel
from cangtwin.twin.network import Link, LinkProfile
from cangtwin.twin.rng import RandomStreams
from cangtwin.twin.site import Site
from cangtwin.twin.warehouse import Warehouse
from cangtwin.twin.world import PhysicalWorld

LAN = LinkProfile(base_latency_s=0.004, jitter_s=0.002)
WAN = LinkProfile(base_latency_s=0.030, jitter_s=0.015)

Record = Callable[[str, object], None]


class NamespacedStreams(RandomStreams):
    """The run's streams seen from one warehouse: `get(name)` is the run's `<prefix>/<name>`."""

    def __init__(self, parent: RandomStreams, prefix: str) -> None:
        super().__init__(parent.seed)
        self._parent, self._prefix = parent, prefix

    def get(self, name: str) -> np.random.Generator:
        return self._parent.get(f"{self._prefix}/{name}")


class Rig:
    """Built in two steps: the twin side first (the cloud's book and device registry are made
    from it), then `attach` gives it an edge connected to the cloud."""

    def __init__(self, env: simpy.Environment, site: Site, streams: RandomStreams, record: Record, *,
                 lidar_scans: bool, id_prefix: str = "", replaying: bool = False, record_inputs: bool = False) -> None:
        self.env = env
        self.site = site
        self.streams = streams
        self.record = record
        self.replaying = replaying
        self.record_inputs = record_inputs
        self.inputs: list[tuple[float, bytes]] = []
        self.world = PhysicalWorld(site)
        self.warehouse = Warehouse(env, site, self.world, streams, record, id_prefix=id_prefix)
        self.device_link = Link(env, "devices→edge", streams.get("link.devices"), LAN, fifo=False)
        self.uplink = Link(env, "edge→cloud", streams.get("link.uplink"), WAN)
        self.downlink = Link(env, "cloud→edge", streams.get("link.downlink"), WAN)
        self.fleet: dict[str, Device] = build_fleet(
            env, self.warehouse, streams, lambda _id: self.to_edge, record, lidar_scans=lidar_scans,
        )
        self.edges: list[EdgeService] = []
        self.frames_while_down = 0

    @property
    def id(self) -> str:
        return self.site.id

    def device_records(self) -> list[DeviceRecord]:
        """What the integrator registers in the cloud for this warehouse's devices."""
        return [DeviceRecord(d.id, d.type, d.key, device_attrs(self.site, d.id)) for d in self.fleet.values()]

    def attach(self, cloud: CloudService, clock: Clock, models: dict[str, ThingModel], ruleset: RuleSet,
               outbox_config: OutboxConfig, outbox_path: Path | None, tap: Record) -> None:
        self.cloud = cloud
        self._edge_parts = (clock, models, ruleset, outbox_config, tap)
        self._outbox_key = Ed25519PrivateKey.from_private_bytes(self.streams.get("edge.keys").bytes(32))
        # In memory unless the edge is to crash: then it must be a file that survives the restart.
        self.outbox_path = outbox_path
        if outbox_path:
            for leftover in outbox_path.parent.glob(outbox_path.name + "*"):
                leftover.unlink()
        self.edge = self._new_edge()
        cloud.connect_edge(self.id, lambda data: self.downlink.send(data, lambda d: self.edge.on_downlink(d)))

    def _new_edge(self) -> EdgeService:
        clock, models, ruleset, outbox_config, tap = self._edge_parts
        provisioned = self.cloud.devices.provisioning(self.id)  # a restarted edge is provisioned afresh
        outbox = Outbox(self.outbox_path, outbox_config, self._outbox_key)
        edge = EdgeService(
            self.id, clock, provisioned, models, ruleset, outbox,
            send_uplink=lambda data: self.uplink.send(data, self.cloud.on_uplink),
            tap=tap, geometry=site_geometry(self.site), send_command=self.command_device,
        )
        self.edges.append(edge)
        return edge

    def command_device(self, device_id: str, action: str, args: dict) -> None:
        """Edge → device actions travel the device link like any message (here: in-process).

        In a replay the devices are not live: what they answered is already in the recording."""
        if self.replaying:
            return
        device = self.fleet.get(device_id)
        handler = getattr(device, action, None)
        if handler is not None:
            self.env.timeout(LAN.base_latency_s).callbacks.append(lambda _e: handler())

    def crash_edge(self) -> None:
        self.edge.stop()
        self.edge.outbox.close()
        self.record("fault.edge-crash", {"site": self.id})

    def restart_edge(self) -> None:
        self.edge = self._new_edge()
        self.edge.start()
        self.record("fault.edge-restart", {"site": self.id})

    def to_edge(self, frame: bytes) -> None:
        self.device_link.send(frame, self.deliver_to_edge)

    def deliver_to_edge(self, frame: bytes) -> None:
        if self.record_inputs:
            self.inputs.append((self.env.now, frame))
        if self.edge.running:
            self.edge.on_frame(frame)
        else:
            self.frames_while_down += 1

    def start_twin(self) -> None:
        for device in self.fleet.values():
            device.start()
        self.env.process(self.warehouse.collect())

    @property
    def links(self) -> tuple[Link, Link, Link]:
        return (self.device_link, self.uplink, self.downlink)

    def records_lost(self) -> int:
        """Outbox sequence numbers neither committed at the cloud nor still waiting in the outbox."""
        pending = {e.seq for e in self.edge.outbox.next_batch(1 << 30, self.env.now)}
        head_seq, _ = self.edge.outbox.head
        return sum(1 for seq in range(1, head_seq + 1) if seq not in pending and not self.cloud.has_record(self.id, seq))


def device_attrs(site, device_id: str) -> dict[str, str]:
    """What the warehouse's integrator provisions on the edge for each device."""
    spec = site.spec
    entry = next(d for d in spec.devices if d.id == device_id)
    attrs = {k: v for k, v in (("gate", entry.gate), ("weighbridge", entry.weighbridge), ("forklift", entry.forklift)) if v}
    if entry.weighbridge:
        scale = next(w for w in spec.weighbridges if w.id == entry.weighbridge)
        attrs["division_kg"] = repr(scale.division_kg)
    if entry.type == "lidar":  # the mount, so the edge can place the points in the site
        attrs["position"] = ",".join(map(repr, entry.position))
        attrs["bays"] = ",".join(entry.bays)
    if entry.type == "climate-sensor":
        zone = next((name for name, rect in spec.zones.items() if rect.contains(*entry.position[:2])), None)
        stored = sorted({bay.commodity for bay in spec.bays if zone is None or bay.zone == zone})
        attrs["commodities"] = ",".join(stored)
        if zone:
            attrs["zone"] = zone
    return attrs


def site_geometry(site) -> SiteGeometry:
    """The site plan the integrator loads onto the edge: zones, bays, time zone, working hours."""
    s = site.spec
    return SiteGeometry.model_validate({
        "site": s.site, "timezone": s.timezone, "working_hours": s.working_hours.model_dump(),
        "zones": {k: r.model_dump() for k, r in s.zones.items()},
        "bays": [{"id": b.id, "zone": b.zone, "rect": b.rect.model_dump()} for b in s.bays],
    })
