"""What stands behind an alert: its rule and parameters, the money at risk, and its evidence.

Verification is the ledger's own (`platform.ledger.package.verify_package`), run against the
parties' keys the run published (`parties.json`), with the quorum `cangtwin verify` uses.
Nothing here re-implements a proof check.
"""

from __future__ import annotations

import base64
import bisect
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import msgspec

from cangtwin.platform.config_file import InputError
from cangtwin.platform.ledger.package import VerificationReport, verify_package
from cangtwin.platform.rules.ruleset import RuleSet, load_ruleset

QUORUM = 3  # signatures a tree head needs, as `cangtwin verify` asks by default (3 of 4 parties)


@dataclass(frozen=True)
class EvidenceEntry:
    index: int
    tree_size: int
    proof_hashes: int
    text: str


def rulesets_for(provenance: dict) -> list[RuleSet]:
    """Rule files that may be in force in a run: the default, the scenario's own and its updates."""
    found = []
    try:
        found.append(load_ruleset(None))
    except InputError:
        pass
    source = provenance.get("scenario_file")
    if source and Path(source).is_file():
        from cangtwin.scenarios.spec import load_scenario, rules_file  # only when the file is there

        try:
            scenario = load_scenario(source, seed=provenance.get("seed"))
            found.append(scenario.ruleset)
            for op in scenario.spec.operations:
                if getattr(op, "kind", "") == "rules-update":
                    try:
                        found.append(load_ruleset(rules_file(scenario, op.file)))
                    except InputError:
                        pass  # a refused file: it never was in force
        except InputError:
            pass
    return found


def rule_entry(alert: dict, rulesets: list[RuleSet]) -> dict | None:
    """The rule entry (id, kind, severity, section, params) that raised `alert`, if its file is known."""
    for ruleset in rulesets:
        if ruleset.label == alert.get("ruleset"):
            for entry in ruleset.entries:
                if entry.id == alert["rule"]:
                    return entry.model_dump(mode="json")
    return None


class Prices:
    """Commodity prices over the run, from the market ticks the platform received."""

    def __init__(self, others: list) -> None:
        self._series: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
        self.commodity: dict[str, str] = {}
        for t, ev, data in others:
            if ev == "market.tick" and "commodity" in data and "price_cny_per_t" in data:
                times, values = self._series[data["commodity"]]
                times.append(t)
                values.append(data["price_cny_per_t"])
            elif ev == "cloud.registry":
                for lot in data.get("fingerprint", {}).get("lots", []):
                    if "lot" in lot and "commodity" in lot:
                        self.commodity.setdefault(lot["lot"], lot["commodity"])

    def at(self, commodity: str, t: float) -> float | None:
        times, values = self._series.get(commodity, ([], []))
        i = bisect.bisect_right(times, t)
        return values[i - 1] if i else None


def money_at_risk(alert: dict, lot_mass: dict[str, float], lot_commodity: dict[str, str],
                  prices: Prices) -> float | None:
    """Book mass × last price of the lots an alert names, at the alert's event time (CNY).

    None when the alert names no lots (a device or a loan, say): then nothing physical moved.
    """
    lots = [tg[4:] for tg in alert["targets"] if tg.startswith("lot:")]
    total, known = 0.0, False
    for lot in lots:
        commodity = lot_commodity.get(lot)
        price = prices.at(commodity, alert["event_time"]) if commodity else None
        if price is not None and lot in lot_mass:
            total += lot_mass[lot] / 1000.0 * price
            known = True
    return round(total, 2) if known else None


def package_path(run_dir: Path, result: dict, alert_id: str) -> Path | None:
    name = result.get("evidence", {}).get(alert_id)
    return run_dir / "evidence" / name if name else None


def evidence_entries(path: Path) -> list[EvidenceEntry]:
    """The ledger entries of an evidence package, decoded for reading (proofs stay as they are)."""
    try:
        return package_entries(path.read_bytes(), str(path))
    except OSError as exc:
        raise ValueError(f"{path}: unreadable evidence package: {exc}") from None


def package_entries(data: bytes, where: str) -> list[EvidenceEntry]:
    """As `evidence_entries`, for package bytes (e.g. as the bank API served them)."""
    try:
        package = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where}: unreadable evidence package: {exc}") from None
    entries = []
    for e in package.get("entries", []):
        try:
            text = base64.b64decode(e["data"]).decode("utf-8", "replace")
        except (KeyError, ValueError):
            text = "(undecodable entry)"
        entries.append(EvidenceEntry(e.get("index", -1), e.get("tree_size", -1), len(e.get("inclusion", [])), text))
    return entries


def verify(run_dir: Path, result: dict, alert_id: str) -> VerificationReport | str:
    """The ledger's verdict on an alert's evidence package, or why it could not be checked."""
    path = package_path(run_dir, result, alert_id)
    if path is None:
        return f"alert {alert_id} has no evidence package in this run"
    try:
        data = path.read_bytes()
        keys = msgspec.json.decode((run_dir / "parties.json").read_bytes(), type=dict[str, bytes])
    except FileNotFoundError as exc:
        return f"{exc.filename}: missing"
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return f"{run_dir / 'parties.json'}: not the parties' keys: {exc}"
    return verify_package(data, QUORUM, trusted_keys=keys)
