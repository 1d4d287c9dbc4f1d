"""A run's replay model: what the floor looked like at any instant of simulated time.

Built once per run from the event log (and the recorded edge inputs when the run kept them),
then queried per replay frame. Queries are array look-ups (bisect, searchsorted, interp), so
a frame of a day-long `medium` run costs well under a millisecond on the server.

Sources, and how honest each is:
- bays: the collateral book the cloud synced to the edge (`edge.book-sync`: which lot is in
  which bay, pledged to which loan, released) and the twin's truth of goods moving
  (`twin.lot-moved`, `twin.goods-left`);
- forklifts: their UWB `position` messages when the run recorded its inputs; otherwise only
  where each forklift put each lot down (`twin.lot-moved`), interpolated in between;
- trucks: the twin's gate, weighbridge and loading events (trucks carry no tag);
- device health: when each device last sent anything (`device.emit`), against its heartbeat.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from cangtwin.dash_app.results import Emits
from cangtwin.twin.site import Site

SILENT_AFTER_PERIODS = 3  # as the device-offline rule's default k


@dataclass(frozen=True)
class BayState:
    lots: int
    pledged: dict[str, int]  # loan -> lots of this bay pledged to it
    released: int
    alerted: bool


@dataclass(frozen=True)
class Window:
    start: float
    end: float
    kind: str
    label: str


def _center(rect) -> tuple[float, float]:
    return ((rect.x0 + rect.x1) / 2, (rect.y0 + rect.y1) / 2)


class Replay:
    def __init__(self, site: Site, result: dict, emits: Emits, others: list, positions: dict | None = None) -> None:
        spec = site.spec
        self.site = site
        firsts = [others[0][0]] if others else []
        lasts = [others[-1][0]] if others else []
        if len(emits):
            firsts.append(float(emits.t[0]))
            lasts.append(float(emits.t[-1]))
        self.start, self.end = min(firsts, default=0.0), max(lasts, default=0.0)
        self.positions_recorded = positions is not None
        bay_center = {b.id: _center(b.rect) for b in spec.bays}
        self._book_snapshots(others)
        self.loan_bank = _loan_banks(others, self._pledged_at_start)
        filings = [data for _t, ev, data in others if ev == "cloud.registry" and "bank" in data]
        self.filing_bank = {f"{prefix}:{data[key]}": data["bank"] for data in filings
                            for prefix, key in (("pledge", "receipt"), ("registration", "registration")) if key in data}
        self._filing_lots = {f"{prefix}:{data[key]}": [lot["lot"] for lot in data.get("fingerprint", {}).get("lots", [])
                                                       if "lot" in lot]
                             for data in filings for prefix, key in (("pledge", "receipt"), ("registration", "registration"))
                             if key in data}
        self._devices(emits, site, result)
        self._vehicles(others, spec, bay_center, positions)
        self._alerts(result)
        self.windows = _windows(result, others, self.end)
        self.injections = [(lab["onset"] if lab["onset"] is not None else lab["injected_at"], lab["id"], lab["kind"])
                           for lab in result["labels"] if not lab["fault"]]
        self.rate_t, self.rate_n = _message_rate(emits, self.start, self.end)

    # --- collateral book over time ---------------------------------------------------------
    def _book_snapshots(self, others: list) -> None:
        where: dict[str, str | None] = {}
        pledged: dict[str, str] = {}
        released: set[str] = set()
        pledged_by: dict[str, dict[str, str]] = {}  # per warehouse (edge site): each edge gets its own book
        released_by: dict[str, set[str]] = {}
        self._snap_t: list[float] = []
        self._snap: list[dict[str, BayState]] = []
        self.lot_bay: dict[str, str] = {}
        self.lot_mass: dict[str, float] = {}
        self._pledged_at_start: dict[str, str] = {}
        for t, ev, data in others:
            if ev == "edge.book-sync":
                for lot, bay in data.get("bays", {}).items():
                    where.setdefault(lot, bay)
                site = data.get("site", "")
                if site not in pledged_by:  # this warehouse's first book: the pledges at the start
                    self._pledged_at_start.update(data.get("pledged", {}))
                pledged_by[site] = dict(data.get("pledged", {}))
                released_by[site] = set(data.get("released", []))
                pledged = {lot: loan for book in pledged_by.values() for lot, loan in book.items()}
                released = set().union(*released_by.values())
                self.lot_mass.update(data.get("masses", {}))
            elif ev == "twin.lot-moved":
                to = data["to"]
                where[data["lot"]] = to[4:] if to.startswith("bay:") else None
            elif ev == "twin.goods-left":
                for lot in data["lots"]:
                    where[lot] = None
            else:
                continue
            for lot, bay in where.items():
                if bay is not None:
                    self.lot_bay.setdefault(lot, bay)
            self._snap_t.append(t)
            self._snap.append(self._bays_now(where, pledged, released))

    @staticmethod
    def _bays_now(where: dict, pledged: dict, released: set) -> dict[str, BayState]:
        lots: dict[str, int] = defaultdict(int)
        by_loan: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        rel: dict[str, int] = defaultdict(int)
        for lot, bay in where.items():
            if bay is None:
                continue
            lots[bay] += 1
            if lot in pledged:
                by_loan[bay][pledged[lot]] += 1
            if lot in released:
                rel[bay] += 1
        return {bay: BayState(n, dict(by_loan[bay]), rel[bay], False) for bay, n in lots.items()}

    def bays_at(self, t: float) -> dict[str, BayState]:
        if not self._snap:
            return {}
        i = max(bisect.bisect_right(self._snap_t, t) - 1, 0)  # the initial stock is there from the start
        alerted = {bay for at, bays in self._alert_bays if at <= t for bay in bays}
        return {bay: BayState(s.lots, s.pledged, s.released, bay in alerted) for bay, s in self._snap[i].items()} | {
            bay: BayState(0, {}, 0, True) for bay in alerted - self._snap[i].keys()}

    # --- alerts ----------------------------------------------------------------------------
    def _alerts(self, result: dict) -> None:
        self.alerts = sorted(result["alerts"], key=lambda a: a["raised_at"])
        self._alert_bays = []
        for a in self.alerts:
            bays = {tg[4:] for tg in a["targets"] if tg.startswith("bay:")}
            lots = [tg[4:] for tg in a["targets"] if tg.startswith("lot:")]
            lots += [lot for tg in a["targets"] for lot in self._filing_lots.get(tg, [])]  # a filing's goods
            bays |= {self.lot_bay[lot] for lot in lots if lot in self.lot_bay}
            self._alert_bays.append((a["raised_at"], bays))

    def banks_of(self, alert: dict) -> set[str]:
        """The banks an alert concerns: through its loans, or the loans its lots are pledged to."""
        loans = set(alert.get("detail", {}).get("loans", []) or [])
        loans |= {tg[5:] for tg in alert["targets"] if tg.startswith("loan:")}
        banks = {self.filing_bank[tg] for tg in alert["targets"] if tg in self.filing_bank}
        loans |= {self._pledged_at_start[tg[4:]] for tg in alert["targets"]
                  if tg.startswith("lot:") and tg[4:] in self._pledged_at_start}
        banks |= {self.loan_bank[loan] for loan in loans if loan in self.loan_bank}
        banks |= {tg[5:] for tg in alert["targets"] if tg.startswith("bank:")}
        detail = alert.get("detail", {})
        banks |= {b for key in ("bank", "first_bank", "second_bank") if isinstance(b := detail.get(key), str)}
        banks |= {b for b in detail.get("banks", []) or [] if isinstance(b, str)}
        return banks

    # --- devices -----------------------------------------------------------------------------
    def _devices(self, emits: Emits, site: Site, result: dict) -> None:
        order = np.argsort(emits.device, kind="stable")  # the log is in time order, so each run stays sorted
        bounds = np.searchsorted(emits.device[order], np.arange(len(emits.devices) + 1))
        code = {name: i for i, name in enumerate(emits.devices)}
        self.device_ids = [d.id for d in site.spec.devices]
        empty = np.zeros(0, dtype=np.float64)
        self._device_times = {d: emits.t[order[bounds[code[d]]:bounds[code[d] + 1]]] if d in code else empty
                              for d in self.device_ids}
        self.silent_after = SILENT_AFTER_PERIODS * site.spec.rates.heartbeat_s
        self._failed_at = {}
        for lab in result["labels"]:
            if lab["kind"] == "device-failure":
                for tg in lab["targets"]:
                    dev = tg.split(":", 1)[-1]
                    self._failed_at[dev] = lab["onset"] if lab["onset"] is not None else lab["injected_at"]

    def device_health(self, t: float) -> dict[str, str]:
        """ok | silent (no message for k heartbeats) | failed (an injected failure) | waiting (none yet)."""
        health = {}
        for dev, times in self._device_times.items():
            i = int(np.searchsorted(times, t, side="right"))
            if dev in self._failed_at and t >= self._failed_at[dev]:
                health[dev] = "failed"
            elif i == 0:
                health[dev] = "waiting"
            else:
                health[dev] = "ok" if t - times[i - 1] <= self.silent_after else "silent"
        return health

    # --- vehicles ----------------------------------------------------------------------------
    def _vehicles(self, others: list, spec, bay_center: dict, positions: dict | None) -> None:
        gates = {g.id: g for g in spec.gates}
        scales = {w.id: _center(w.rect) for w in spec.weighbridges}
        home = {f.id: tuple(f.home) for f in spec.forklifts}
        def same_warehouse(items, name: str) -> list:
            """Of a multi-warehouse site's gates or docks, those at `name`'s warehouse (prefix `w2.`)."""
            prefix = name.split(".", 1)[0] + "." if "." in name else ""
            return [i for i in items if i.id.startswith(prefix)] or list(items)

        trucks: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
        truck_span: dict[str, list[float]] = {}
        truck_dock: dict[str, tuple[float, float]] = {}
        forks: dict[str, list[tuple[float, float, float]]] = {f: [(self.start, *home[f])] for f in home}
        first_gate = spec.gates[0]
        for t, ev, data in others:
            if ev == "twin.truck-arrived":
                truck = data["truck"]
                trucks[truck].append((t, *same_warehouse(spec.gates, truck)[0].outside))
                truck_span[truck] = [t, self.end]
            elif ev == "twin.gate-pass" and data.get("truck") in truck_span:
                gate = gates.get(data["gate"], first_gate)
                trucks[data["truck"]].append((t, *gate.position))
                if data["direction"] == "out":
                    trucks[data["truck"]].append((t + 10, *gate.outside))
                    truck_span[data["truck"]][1] = t + 10
            elif ev == "twin.weigh" and data.get("truck") in truck_span:
                trucks[data["truck"]].append((t, *scales.get(data["scale"], first_gate.position)))
            elif ev == "twin.lot-moved":
                to = data["to"]
                if to.startswith("bay:") and to[4:] in bay_center:
                    xy = bay_center[to[4:]]
                elif to.startswith("truck:"):
                    truck = to[6:]
                    lot_bay = self.lot_bay.get(data["lot"])
                    docks = [tuple(d.position) for d in same_warehouse(spec.docks, truck)]
                    near = bay_center.get(lot_bay, docks[0] if docks else first_gate.position)
                    xy = truck_dock.setdefault(truck, min(docks, key=lambda d: abs(d[0] - near[0])) if docks else near)
                    if truck in trucks:
                        trucks[truck].append((t, *xy))
                else:
                    continue
                if data.get("forklift") in forks and positions is None:
                    forks[data["forklift"]].append((t, *xy))
        if positions is not None:
            forks = {f: positions.get(f, forks[f]) for f in forks}
        else:
            forks = {f: _back_home(k, home[f]) for f, k in forks.items()}
        self._forks = {f: _track(k) for f, k in forks.items()}
        self._trucks = {tr: _track(sorted(k)) for tr, k in trucks.items()}
        self._truck_span = truck_span

    def vehicles_at(self, t: float) -> tuple[dict[str, tuple[float, float]], dict[str, tuple[float, float]]]:
        forks = {f: (float(np.interp(t, k[0], k[1])), float(np.interp(t, k[0], k[2]))) for f, k in self._forks.items()}
        trucks = {tr: (float(np.interp(t, k[0], k[1])), float(np.interp(t, k[0], k[2])))
                  for tr, k in self._trucks.items() if self._truck_span[tr][0] <= t <= self._truck_span[tr][1]}
        return forks, trucks


def _back_home(keys: list, home: tuple[float, float], after_s: float = 60.0) -> list:
    """Derived tracks: a forklift drives home `after_s` after a drop unless its next job is near."""
    out = []
    for i, key in enumerate(keys):
        out.append(key)
        following = keys[i + 1][0] if i + 1 < len(keys) else float("inf")
        if i > 0 and following > key[0] + 2 * after_s:
            out.append((key[0] + after_s, *home))
    return out


def _track(keys: list[tuple[float, float, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    arr = np.asarray(keys, dtype=np.float64).reshape(-1, 3)
    return arr[:, 0], arr[:, 1], arr[:, 2]


def _loan_banks(others: list, pledged: dict[str, str]) -> dict[str, str]:
    """Each loan's bank: the bank of the first registry filing that covers the loan's lots."""
    banks: dict[str, str] = {}
    for _t, ev, data in others:
        if ev != "cloud.registry" or "bank" not in data:
            continue
        for lot in data.get("fingerprint", {}).get("lots", []):
            loan = pledged.get(lot.get("lot"))
            if loan is not None:
                banks.setdefault(loan, data["bank"])
    return banks


def _windows(result: dict, others: list, end: float) -> list[Window]:
    windows = []
    for lab in result["labels"]:
        if lab["kind"] == "uplink-outage" and lab["magnitude_unit"] == "s":
            start = lab["onset"] if lab["onset"] is not None else lab["injected_at"]
            windows.append(Window(start, start + lab["magnitude"], "outage", lab["id"]))
    crash = None
    for t, ev, _data in others:
        if ev == "fault.edge-crash":
            crash = t
        elif ev == "fault.edge-restart" and crash is not None:
            windows.append(Window(crash, t, "edge-down", "edge crash"))
            crash = None
    if crash is not None:
        windows.append(Window(crash, end, "edge-down", "edge crash"))
    return windows


def _message_rate(emits: Emits, start: float, end: float) -> tuple[list[float], list[int]]:
    """Device messages per minute over the run (the timeline's backdrop)."""
    if not len(emits) or end <= start:
        return [], []
    edges = np.arange(start, end + 60.0, 60.0)
    counts, _ = np.histogram(emits.t, bins=edges)
    return edges[:-1].tolist(), counts.tolist()
