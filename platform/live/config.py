"""The deployment file `cangtwin serve` reads: broker, logins, store, warehouses and their devices.

Strict like every user file here: unknown fields, wrong types and inconsistent references are
one `InputError` naming the file, the line and the field. Relative paths are relative to the file.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import pydantic
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cangtwin.platform.cloud.book import CollateralBook, Loan, Lot
from cangtwin.platform.config_file import InputError, Locator, StrictModel, load_yaml, parse_yaml_located, read_text
from cangtwin.platform.edge.auth import DeviceRecord
from cangtwin.platform.edge.outbox import OutboxConfig
from cangtwin.platform.live import topics
from cangtwin.platform.ledger.tree_head import PARTIES
from cangtwin.platform.live.mqtt import MqttSettings
from cangtwin.platform.live.webhook import Hook
from cangtwin.platform.rules.ruleset import RuleSet, load_ruleset
from cangtwin.platform.site_geometry import SiteGeometry
from cangtwin.platform.thing_model import ThingModel, ThingModelError


class BrokerFile(StrictModel):
    host: str = "127.0.0.1"
    port: int = pydantic.Field(default=1883, ge=1, le=65535)
    connect_timeout_s: float = pydantic.Field(default=10.0, gt=0)


class LoginFile(StrictModel):
    username: str = pydantic.Field(min_length=1)
    password: str = pydantic.Field(min_length=1)


class DeviceFile(StrictModel):
    id: str
    type: str
    key_hex: str = pydantic.Field(pattern=r"^([0-9a-fA-F]{2}){16,64}$", description="the device's HMAC key")
    password: str | None = pydantic.Field(default=None, min_length=1, description="its MQTT password")
    attrs: dict[str, str] = {}


class OutboxFile(StrictModel):
    path: str
    max_bytes: int = pydantic.Field(default=64 << 20, gt=0)
    segment_bytes: int = pydantic.Field(default=1 << 20, gt=0)
    ttl_s: float | None = pydantic.Field(default=None, gt=0)
    when_full: Literal["reject", "overwrite_oldest"] = "reject"


class SiteFile(StrictModel):
    name: str
    outbox: OutboxFile
    geometry: str | None = None  # the site plan (zones, bays, time zone, hours) for rules that need it
    device_broker: BrokerFile | None = None  # the warehouse's own broker, if devices do not use `broker`
    login: LoginFile | None = None
    devices: list[DeviceFile] = pydantic.Field(min_length=1)


class CloudFile(StrictModel):
    database: str = "sqlite:///cloud.db"
    login: LoginFile | None = None
    scale_out: bool = False


class LotFile(StrictModel):
    id: str
    tag: str
    site: str
    commodity: str
    mass_kg: float = pydantic.Field(gt=0)
    bay: str | None = None
    volume_m3: float | None = pydantic.Field(default=None, gt=0)


class LoanFile(StrictModel):
    id: str
    bank: str
    borrower: str
    amount_cny: float = pydantic.Field(gt=0)


class PledgeFile(StrictModel):
    loan: str
    receipt: str
    lots: list[str] = pydantic.Field(min_length=1)


class BookFile(StrictModel):
    """The book a brand-new store starts from; once the store holds a book, the store wins."""

    lots: list[LotFile] = []
    loans: list[LoanFile] = []
    pledges: list[PledgeFile] = []


class ClockFile(StrictModel):
    """The platform's time: wall time, or a clock that read `start` at wall time `at` and runs `speed` times
    as fast as the wall clock (all Unix seconds).

    A harness that drives the platform faster than real time (`cangtwin live-run`) needs the
    platform's clock to run at the same rate; both read this section, so they agree to the instant.
    """

    speed: float = pydantic.Field(default=1.0, gt=0, le=1000)
    start: float | None = pydantic.Field(default=None, ge=0, description="platform time at wall time `at`")
    at: float | None = pydantic.Field(default=None, ge=0, description="a wall time (Unix seconds)")

    @pydantic.model_validator(mode="after")
    def _anchored(self) -> ClockFile:
        if (self.start is None) != (self.at is None):
            raise ValueError("give both start and at, or neither")
        if self.speed != 1.0 and self.start is None:
            raise ValueError("a clock with speed other than 1 needs start and at")
        return self

    def now(self) -> float:
        wall = time.time()
        return wall if self.start is None else self.start + (wall - self.at) * self.speed


class ApiFile(StrictModel):
    """The bank API, served on the cloud's event loop."""

    host: str = "127.0.0.1"
    port: int | None = pydantic.Field(default=None, ge=0, le=65535, description="none: only with --api-port")
    access: str = pydantic.Field(description="the access file: tokens and their roles")
    audit: str = "sqlite:///api-audit.sqlite"


class LedgerFile(StrictModel):
    """The evidence ledger the cloud writes, and the parties' signing keys (Ed25519 seeds)."""

    path: str
    parties: dict[str, str]

    @pydantic.field_validator("parties")
    @classmethod
    def _all_parties(cls, parties: dict[str, str]) -> dict[str, str]:
        if sorted(parties) != sorted(PARTIES):
            raise ValueError(f"needs exactly the parties {', '.join(PARTIES)}")
        for name, seed in parties.items():
            if len(seed) != 64 or any(c not in "0123456789abcdefABCDEF" for c in seed):
                raise ValueError(f"{name}: a party key is 64 hex digits (an Ed25519 seed)")
        return parties


class WebhookFile(StrictModel):
    """A receiver of alert events (platform/live/webhook.py); `banks` omitted: every alert."""

    url: str = pydantic.Field(pattern=r"^https?://[^\s/]+", description="where to POST each alert event")
    secret: str = pydantic.Field(min_length=16, description="HMAC-SHA256 key of X-Cangtwin-Signature")
    banks: list[str] | None = pydantic.Field(default=None, min_length=1)
    token: str | None = pydantic.Field(default=None, min_length=1, description="also sent as a bearer token")
    queue: int = pydantic.Field(default=1000, ge=1, le=1_000_000)
    retries: int = pydantic.Field(default=5, ge=0, le=100)
    backoff_s: float = pydantic.Field(default=0.5, gt=0, le=3600)
    max_backoff_s: float = pydantic.Field(default=30.0, gt=0, le=86400)
    timeout_s: float = pydantic.Field(default=5.0, gt=0, le=600)


class ServeFile(StrictModel):
    broker: BrokerFile = BrokerFile()
    thing_descriptions: str
    rules: str | None = None
    clock: ClockFile = ClockFile()
    cloud: CloudFile = CloudFile()
    api: ApiFile | None = None
    ledger: LedgerFile | None = None
    webhooks: list[WebhookFile] = []
    book: BookFile = BookFile()
    sites: list[SiteFile] = pydantic.Field(min_length=1)


@dataclass(frozen=True)
class SiteDeployment:
    name: str
    mqtt: MqttSettings
    device_mqtt: MqttSettings
    devices: dict[str, DeviceRecord]
    device_passwords: dict[str, str]
    outbox_path: Path
    outbox: OutboxConfig
    geometry: SiteGeometry | None = None


class DilatedClock:
    """The deployment's clock (`ClockFile`) on an asyncio loop.

    Timers shrink by the speed, so every platform timer keeps its meaning in platform time.
    """

    def __init__(self, clock: ClockFile, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.clock = clock
        self.loop = loop or asyncio.get_running_loop()

    def now(self) -> float:
        return self.clock.now()

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self.loop.call_later(max(0.0, delay) / self.clock.speed, callback)


@dataclass(frozen=True)
class ApiDeployment:
    host: str
    port: int | None
    access: Path
    audit_url: str


@dataclass(frozen=True)
class LedgerDeployment:
    path: Path
    parties: dict[str, Ed25519PrivateKey]


@dataclass(frozen=True)
class Deployment:
    source: str
    broker: BrokerFile
    cloud_mqtt: MqttSettings
    database: str
    scale_out: bool
    ruleset: RuleSet
    models: dict[str, ThingModel]
    sites: dict[str, SiteDeployment]
    book: CollateralBook
    clock: ClockFile = ClockFile()
    api: ApiDeployment | None = None
    ledger: LedgerDeployment | None = None
    webhooks: tuple[Hook, ...] = ()


def _thing_models(directory: Path, locator: Locator) -> dict[str, ThingModel]:
    if not directory.is_dir():
        raise locator.error(("thing_descriptions",), f"{directory} is not a directory")
    models = {}
    for path in sorted(directory.glob("*.json")):
        try:
            models[path.stem] = ThingModel(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, ThingModelError) as exc:
            raise locator.error(("thing_descriptions",), f"{path.name}: not a usable Thing Description ({exc})") from None
    if not models:
        raise locator.error(("thing_descriptions",), f"no *.json Thing Descriptions in {directory}")
    return models


def _database_url(url: str, base: Path) -> str:
    """A relative SQLite file is relative to the deployment file, like every other path in it."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and url != prefix + ":memory:" and not url[len(prefix):].startswith("/"):
        return prefix + str(base / url[len(prefix):])
    return url


def _book(spec: BookFile, sites: set[str], locator: Locator) -> CollateralBook:
    book = CollateralBook()
    for i, lot in enumerate(spec.lots):
        if lot.site not in sites:
            raise locator.error(("book", "lots", i, "site"), f"no site {lot.site!r} in sites")
        if lot.id in book.lots:
            raise locator.error(("book", "lots", i, "id"), f"lot {lot.id} is listed twice")
        if any(other.tag == lot.tag for other in book.lots.values()):
            raise locator.error(("book", "lots", i, "tag"), f"tag {lot.tag} already belongs to another lot")
        book.add_lot(Lot(lot.id, lot.tag, lot.site, lot.commodity, lot.mass_kg, lot.bay, volume_m3=lot.volume_m3))
    for i, loan in enumerate(spec.loans):
        if loan.id in book.loans:
            raise locator.error(("book", "loans", i, "id"), f"loan {loan.id} is listed twice")
        book.open_loan(Loan(loan.id, loan.bank, loan.borrower, loan.amount_cny))
    for i, pledge in enumerate(spec.pledges):
        try:
            book.pledge(pledge.loan, list(pledge.lots), pledge.receipt)
        except ValueError as exc:  # BookError: unknown lot or loan, a lot pledged twice, ...
            raise locator.error(("book", "pledges", i), str(exc)) from None
    return book


def parse_deployment(text: str, source: str, base: Path) -> Deployment:
    spec, locator = parse_yaml_located(text, ServeFile, source)
    models = _thing_models(base / spec.thing_descriptions, locator)
    try:
        ruleset = load_ruleset(base / spec.rules if spec.rules else None)
    except InputError as exc:
        raise locator.error(("rules",), f"the rule file does not load: {exc}") from None
    broker = spec.broker
    sites: dict[str, SiteDeployment] = {}
    for i, site in enumerate(spec.sites):
        problem = topics.check_name("site", site.name)
        if problem:
            raise locator.error(("sites", i, "name"), problem)
        if site.name in sites:
            raise locator.error(("sites", i, "name"), f"site {site.name!r} is listed twice")
        devices, passwords = {}, {}
        for j, device in enumerate(site.devices):
            problem = topics.check_name("device", device.id)
            if problem:
                raise locator.error(("sites", i, "devices", j, "id"), problem)
            if device.id in devices:
                raise locator.error(("sites", i, "devices", j, "id"), f"device {device.id!r} is listed twice")
            if device.type not in models:
                raise locator.error(("sites", i, "devices", j, "type"),
                                    f"no Thing Description for {device.type!r} (have: {', '.join(sorted(models))})")
            devices[device.id] = DeviceRecord(device.id, device.type, bytes.fromhex(device.key_hex), dict(device.attrs))
            if device.password is not None:
                passwords[device.id] = device.password
        try:
            outbox = OutboxConfig(site.outbox.max_bytes, site.outbox.segment_bytes, site.outbox.ttl_s,
                                  site.outbox.when_full)
        except ValueError as exc:
            raise locator.error(("sites", i, "outbox"), str(exc)) from None
        geometry = None
        if site.geometry is not None:
            try:
                geometry = load_yaml(base / site.geometry, SiteGeometry)
            except InputError as exc:
                raise locator.error(("sites", i, "geometry"), f"the site plan does not load: {exc}") from None
        elif any(d.type == "positioning-tag" for d in site.devices) and any(
                e.kind == "geofence" and e.enabled for e in ruleset.entries):
            raise locator.error(("sites", i), "the geofence rule needs a site plan (geometry: FILE) "
                                              "for this site's positioning tags")
        login = site.login
        uplink = MqttSettings(broker.host, broker.port, login.username if login else None,
                              login.password if login else None, connect_timeout_s=broker.connect_timeout_s)
        local = site.device_broker
        sites[site.name] = SiteDeployment(
            site.name, uplink,
            dataclasses.replace(uplink, host=local.host, port=local.port, connect_timeout_s=local.connect_timeout_s)
            if local else uplink,
            devices, passwords, base / site.outbox.path, outbox, geometry,
        )
    urls = [hook.url for hook in spec.webhooks]
    for i, url in enumerate(urls):
        if url in urls[:i]:
            raise locator.error(("webhooks", i, "url"), f"{url} is listed twice")
    if spec.ledger and spec.cloud.scale_out:  # several workers must not append to one ledger file
        raise locator.error(("ledger",), "one evidence ledger per cloud: not with cloud.scale_out")
    login = spec.cloud.login
    return Deployment(
        source, broker,
        MqttSettings(broker.host, broker.port, login.username if login else None, login.password if login else None,
                     connect_timeout_s=broker.connect_timeout_s),
        _database_url(spec.cloud.database, base), spec.cloud.scale_out, ruleset, models, sites,
        _book(spec.book, set(sites), locator), spec.clock,
        ApiDeployment(spec.api.host, spec.api.port, base / spec.api.access, _database_url(spec.api.audit, base))
        if spec.api else None,
        LedgerDeployment(base / spec.ledger.path, {name: Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed))
                                                    for name, seed in spec.ledger.parties.items()})
        if spec.ledger else None,
        tuple(Hook(h.url, h.secret.encode("utf-8"), frozenset(h.banks) if h.banks else None, h.token, h.queue,
                   h.retries, h.backoff_s, max(h.backoff_s, h.max_backoff_s), h.timeout_s) for h in spec.webhooks),
    )


def load_deployment(path: str | Path) -> Deployment:
    path = Path(path)
    return parse_deployment(read_text(path), str(path), path.resolve().parent)
