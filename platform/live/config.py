"""The deployment file `cangtwin serve` reads: broker, logins, store, warehouses and their devices.

Strict like every user file here: unknown fields, wrong types and inconsistent references are
one `InputError` naming the file, the line and the field. Relative paths are relative to the file.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pydantic

from cangtwin.platform.cloud.book import CollateralBook, Loan, Lot
from cangtwin.platform.config_file import InputError, Locator, StrictModel, parse_yaml_located, read_text
from cangtwin.platform.edge.auth import DeviceRecord
from cangtwin.platform.edge.outbox import OutboxConfig
from cangtwin.platform.live import topics
from cangtwin.platform.live.mqtt import MqttSettings
from cangtwin.platform.rules.ruleset import RuleSet, load_ruleset
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


class ServeFile(StrictModel):
    broker: BrokerFile = BrokerFile()
    thing_descriptions: str
    rules: str | None = None
    cloud: CloudFile = CloudFile()
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
        login = site.login
        uplink = MqttSettings(broker.host, broker.port, login.username if login else None,
                              login.password if login else None, connect_timeout_s=broker.connect_timeout_s)
        local = site.device_broker
        sites[site.name] = SiteDeployment(
            site.name, uplink,
            dataclasses.replace(uplink, host=local.host, port=local.port, connect_timeout_s=local.connect_timeout_s)
            if local else uplink,
            devices, passwords, base / site.outbox.path, outbox,
        )
    login = spec.cloud.login
    return Deployment(
        source, broker,
        MqttSettings(broker.host, broker.port, login.username if login else None, login.password if login else None,
                     connect_timeout_s=broker.connect_timeout_s),
        _database_url(spec.cloud.database, base), spec.cloud.scale_out, ruleset, models, sites,
        _book(spec.book, set(sites), locator),
    )


def load_deployment(path: str | Path) -> Deployment:
    path = Path(path)
    return parse_deployment(read_text(path), str(path), path.resolve().parent)
