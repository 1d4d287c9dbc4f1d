"""The cloud's device registry: which devices exist, at which site, of what type, and may they speak.

The edges are provisioned from it (each device's own key, 一机一密, and its mounting attributes),
so the cloud is the one place that says which devices a site has. A device the cloud retires — a
camera found tampered with, a scale under investigation — is struck from its edge's list by
command, and from then on its frames are refused there as unknown. Shadows, what each device last
said, sit beside the registry in the cloud service.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from cangtwin.platform.edge.auth import DeviceRecord


@dataclass(frozen=True)
class RegisteredDevice:
    site: str
    record: DeviceRecord
    registered_at: float
    retired_at: float | None = None
    reason: str = ""

    @property
    def active(self) -> bool:
        return self.retired_at is None


class DeviceRegistry:
    def __init__(self) -> None:
        self._devices: dict[str, RegisteredDevice] = {}

    def __contains__(self, device: str) -> bool:
        return device in self._devices

    def __len__(self) -> int:
        return len(self._devices)

    def get(self, device: str) -> RegisteredDevice:
        try:
            return self._devices[device]
        except KeyError:
            raise ValueError(f"device {device!r} is not registered") from None

    def register(self, site: str, record: DeviceRecord, at: float) -> RegisteredDevice:
        """A new device at `site`. Ids are unique across sites: a frame names its device, not its site."""
        if record.id in self._devices:
            raise ValueError(f"device {record.id!r} is already registered at site {self._devices[record.id].site!r}")
        entry = self._devices[record.id] = RegisteredDevice(site, record, at)
        return entry

    def retire(self, device: str, at: float, reason: str) -> RegisteredDevice:
        entry = self.get(device)
        if not entry.active:
            raise ValueError(f"device {device!r} was already retired at {entry.retired_at}")
        entry = self._devices[device] = replace(entry, retired_at=at, reason=reason)
        return entry

    def at_site(self, site: str) -> list[RegisteredDevice]:
        return [d for d in self._devices.values() if d.site == site]

    def provisioning(self, site: str) -> dict[str, DeviceRecord]:
        """What an edge at `site` admits: its active devices, as the edge's authenticator wants them."""
        return {d.record.id: d.record for d in self.at_site(site) if d.active}
