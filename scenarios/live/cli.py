"""`cangtwin live-provision` and `cangtwin live-run`: a scenario against a live platform.

`live-provision SCENARIO OUT` writes what an integrator would set up for cangtwin's own platform
to play that scenario: the deployment file (`serve.yaml`: the scenario's devices with their keys
and MQTT passwords, its book, its rules, a clock at the chosen speed, the bank API, the ledger),
the API's access file, and the adapter file the harness reads (`adapter.yaml`). Another vendor's
platform needs only an adapter file of its own, and the same devices provisioned on its side
(`devices.json` lists them).

`live-run SCENARIO --config adapter.yaml` plays the scenario against whatever the adapter names
and writes `result.json` (with `provenance.live: true`) and `events.jsonl`.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
import traceback
from pathlib import Path

from typing import TYPE_CHECKING

import click
import msgspec
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from cangtwin.platform.api.access import hash_token, new_token
from cangtwin.platform.config_file import InputError
from cangtwin.platform.ledger.tree_head import PARTIES
from cangtwin.platform.live.broker import CLOUD_USER, edge_user

if TYPE_CHECKING:
    from cangtwin.scenarios.spec import Scenario

console = Console(width=None if Console().is_terminal else 120)
errors = Console(stderr=True, emoji=False, highlight=False)


class _Plain(yaml.SafeDumper):
    def ignore_aliases(self, data) -> bool:  # deployment files refuse YAML aliases
        return True


def _dump(path: Path, data: dict, private: bool = False) -> None:
    path.write_text(yaml.dump(data, Dumper=_Plain, sort_keys=False, allow_unicode=True), encoding="utf-8")
    if private:
        path.chmod(0o600)


def provision(scenario: Scenario, out: Path, *, broker_host: str = "127.0.0.1", broker_port: int = 1883,
              api_port: int = 8080, speed: float = 1.0, at: float | None = None) -> dict[str, Path]:
    """Write serve.yaml, site-plan.yaml, access.yaml, tokens.yaml, adapter.yaml and devices.json into `out`.

    The platform's clock reads the scenario's start at wall time `at` (default: now)."""
    import simpy  # the twin's modules load only when a command needs them

    from cangtwin.devices.thing_descriptions import TD_DIR
    from cangtwin.scenarios.live.realtime import check_live, initial_book
    from cangtwin.scenarios.rig import Rig, site_geometry
    from cangtwin.twin.rng import RandomStreams

    check_live(scenario)
    spec = scenario.spec
    rig = Rig(simpy.Environment(initial_time=scenario.start_epoch), scenario.site, RandomStreams(spec.seed),
              lambda *_: None, lidar_scans=spec.twin.lidar_scans)
    try:
        book, records = initial_book(scenario, rig), rig.device_records()
    finally:
        rig.world.close()
    site = rig.id
    out.mkdir(parents=True, exist_ok=True)
    (out / "state").mkdir(exist_ok=True)
    (out / "rules.yaml").write_text(scenario.ruleset.text, encoding="utf-8")
    passwords = {r.id: secrets.token_urlsafe(18) for r in records}
    # The platform's clock reads the scenario's start now, so time-of-day rules see the scenario's hours.
    clock = {"speed": float(speed), "start": float(scenario.start_epoch), "at": float(at if at is not None else time.time())}
    _dump(out / "site-plan.yaml", site_geometry(scenario.site).model_dump(mode="json"))
    banks = {bank: new_token() for bank in sorted({l.bank for l in book.loans.values()})}
    tokens = {"harness": new_token(), "operator": new_token(), **banks}
    _dump(out / "access.yaml", {"tokens": [
        {"name": "harness", "role": "regulator", "sha256": hash_token(tokens["harness"])},
        {"name": "operator", "role": "operator", "sha256": hash_token(tokens["operator"])},
        *({"name": f"{bank}-desk", "role": "bank", "bank": bank, "sha256": hash_token(token)}
          for bank, token in banks.items())]})
    _dump(out / "tokens.yaml", {"tokens": tokens}, private=True)
    serve = {
        "broker": {"host": broker_host, "port": broker_port},
        "thing_descriptions": str(TD_DIR),
        "rules": "rules.yaml",
        "clock": clock,
        "cloud": {"database": "sqlite:///state/cloud.db",
                  "login": {"username": CLOUD_USER, "password": secrets.token_urlsafe(18)}},
        "api": {"host": "127.0.0.1", "port": api_port, "access": "access.yaml", "audit": "sqlite:///state/audit.db"},
        "ledger": {"path": "state/ledger.log",
                   "parties": {name: Ed25519PrivateKey.generate().private_bytes_raw().hex() for name in PARTIES}},
        "book": {
            "lots": [{k: v for k, v in dict(id=lot.id, tag=lot.tag, site=lot.site, commodity=lot.commodity,
                                            mass_kg=float(lot.mass_kg), bay=lot.bay, volume_m3=lot.volume_m3).items()
                      if v is not None} for lot in book.lots.values()],
            "loans": [dict(id=loan.id, bank=loan.bank, borrower=loan.borrower, amount_cny=float(loan.amount_cny))
                      for loan in book.loans.values()],
            "pledges": [dict(loan=r.loan, receipt=r.id, lots=list(r.lots)) for r in book.receipts.values()],
        },
        "sites": [{
            "name": site,
            "outbox": {"path": f"state/outbox-{site}.db"},
            "geometry": "site-plan.yaml",
            "login": {"username": edge_user(site), "password": secrets.token_urlsafe(18)},
            "devices": [{"id": r.id, "type": r.type, "key_hex": r.key.hex(), "password": passwords[r.id],
                         "attrs": dict(r.attrs)} for r in records],
        }],
    }
    _dump(out / "serve.yaml", serve, private=True)
    _dump(out / "adapter.yaml", {
        "broker": {"host": broker_host, "port": broker_port},
        "site": site,
        "logins": {"username": "{siteId}.{deviceId}", "passwords": passwords},  # as broker.device_user names them
        "clock": clock,
        "alerts": {"poll": {"url": f"http://127.0.0.1:{api_port}/v1/alerts", "token": tokens["harness"],
                            "interval_s": 0.25, "page_size": 1000}},
        # the scenario's release orders by each bank's desk, its rule files by the operator
        "bank_api": {"url": f"http://127.0.0.1:{api_port}/v1", "tokens": banks, "operator": tokens["operator"]},
    }, private=True)
    (out / "devices.json").write_text(json.dumps(
        [{"id": r.id, "type": r.type, "key_hex": r.key.hex(), "attrs": dict(r.attrs)} for r in records], indent=1),
        encoding="utf-8")
    (out / "devices.json").chmod(0o600)
    return {name: out / name for name in ("serve.yaml", "site-plan.yaml", "adapter.yaml", "access.yaml", "tokens.yaml",
                                          "devices.json")}


def _fail(message: str, status: int) -> None:
    errors.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(status)


@click.command("live-provision")
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=int, default=None, help="Override the scenario's seed (the device keys follow it).")
@click.option("--broker", "broker", default="127.0.0.1:1883", show_default=True, help="HOST:PORT of the broker.")
@click.option("--api-port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--speed", type=click.FloatRange(0.01, 1000), default=1.0, show_default=True,
              help="The platform clock's speed (live-run drives the twin at the same speed).")
def live_provision(scenario: Path, out: Path, seed: int | None, broker: str, api_port: int, speed: float) -> None:
    """Write the deployment, access and adapter files to play SCENARIO on cangtwin's live platform."""
    from cangtwin.scenarios.spec import load_scenario

    host, _, port = broker.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        _fail(f"--broker: {broker!r} is not HOST:PORT", 2)
    try:
        written = provision(load_scenario(scenario, seed), out, broker_host=host, broker_port=int(port),
                            api_port=api_port, speed=speed)
    except InputError as err:
        _fail(str(err), 2)
    console.print(f"wrote {', '.join(str(p) for p in written.values())}")
    console.print(f"next: cangtwin broker-config {written['serve.yaml']} {out / 'broker'} && "
                  f"mosquitto -c {out / 'broker' / 'mosquitto.conf'}")
    console.print(f"then: cangtwin serve {written['serve.yaml']}   and   "
                  f"cangtwin live-run {scenario} --config {written['adapter.yaml']}")


@click.command("live-run")
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--config", "config", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The adapter file: the platform's broker, topics, clock and alert endpoint.")
@click.option("--speed", type=click.FloatRange(0.01, 1000), default=None,
              help="Twin time per wall second; must match the platform's clock (default: the adapter's clock).")
@click.option("--seed", type=int, default=None, help="Override the scenario's seed.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("results"), show_default=True,
              help="Each run writes <out>/<scenario>-s<seed>-live/.")
def live_run(scenario: Path, config: Path, speed: float | None, seed: int | None, out: Path) -> None:
    """Play SCENARIO in real time (times --speed) against a live platform, through an adapter."""
    from cangtwin.scenarios.live.adapter import AdapterError, load_adapter
    from cangtwin.scenarios.live.bank import check_bank_api
    from cangtwin.scenarios.live.realtime import LiveRun, check_live, live_result
    from cangtwin.scenarios.report import print_summary
    from cangtwin.scenarios.result import passed
    from cangtwin.scenarios.spec import load_scenario

    try:
        loaded = load_scenario(scenario, seed)
        adapter = load_adapter(config)
        check_live(loaded)
        check_bank_api(loaded, adapter)
    except InputError as err:
        _fail(str(err), 2)
    if speed is not None and speed != adapter.speed:
        _fail(f"{config}: clock.speed: the platform's clock runs at {adapter.speed:g}x, not --speed {speed:g}x; "
              "twin and platform must share one speed", 2)
    folder = out / f"{loaded.spec.scenario}-s{loaded.spec.seed}-live"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "crash.log").unlink(missing_ok=True)
    try:
        run = LiveRun(loaded, adapter)
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                      TimeElapsedColumn(), console=errors, transient=True) as bar:
            task = bar.add_task(f"{loaded.spec.scenario} live at {adapter.speed:g}x", total=1.0)
            outcome, figures = run.execute(lambda done: bar.update(task, completed=done))
    except AdapterError as err:
        _fail(f"{config}: {err}", 1)
    except Exception:
        (folder / "crash.log").write_text(traceback.format_exc())
        _fail(f"{loaded.source}: the live run crashed; traceback in {folder / 'crash.log'}", 3)
    result = live_result(outcome, figures, adapter, outcome.log.write(folder / "events.jsonl"))
    (folder / "result.json").write_bytes(msgspec.json.format(msgspec.json.encode(result), indent=2) + b"\n")
    # What only the platform's inside knows is not in a live result; the summary shows it as n/a.
    inside = dict.fromkeys(("edge_accepted", "edge_rejected", "cloud_duplicates", "lost_on_links"), "n/a")
    print_summary(console, {**result, "messages": {**inside, **result["messages"]}}, loaded.site.spec.timezone)
    if not figures.endpoint_answered:
        errors.print(f"warning: the alert endpoint never answered: {figures.endpoint_error}", markup=False)
    failed_calls = [call for call in figures.bank_calls if not call["ok"]]
    for call in failed_calls:
        errors.print(f"error: bank API: {call['operation']} {call['kind']}: {call['status'] or 'no answer'}: "
                     f"{call['message']}", markup=False, highlight=False, soft_wrap=True)
    for refusal in figures.command_refusals[:5]:
        errors.print(f"warning: a device refused a command: {refusal}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"live at {figures.speed:g}x: {figures.published} frames published, {figures.broker_acked} "
                  f"acknowledged by the broker, twin lag at most {figures.max_lag_s} s; wrote {folder / 'result.json'}")
    sys.exit(0 if passed(result) and figures.endpoint_answered and not failed_calls else 1)
