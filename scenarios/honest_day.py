"""Honest site-days: scenario files of a warehouse's ordinary day, for false-alarm baselines.

A day starts at local midnight. Two banks hold loans over half the bays, each at half the
collateral's list value. In working hours a truck
comes every 15 minutes, alternating an inbound of 3 lots into an unpledged box bay and an outbound
of 2 unpledged lots; at noon bank B releases two of its lots and the borrower collects them, the
near miss of an unauthorized outbound. Days off are quiet: heartbeats, climate, scans, frames.
Nothing is injected, so every alert of such a run is a false alarm.
"""

from __future__ import annotations

import datetime as dt

from cangtwin.twin.site import load_site

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TRUCK_EVERY_MIN = 15
LOAN_TO_VALUE = 0.5


def honest_day(site_name: str, day: dt.date, seed: int, lidar_scans: bool = True) -> str:
    """The scenario text of one honest day at `site_name`."""
    spec = load_site(site_name).spec
    bays = sorted(spec.bays, key=lambda b: b.id)
    pledged = bays[: len(bays) // 2]
    bank_a, bank_b = pledged[: len(pledged) // 2 + 1], pledged[len(pledged) // 2 + 1:]
    free = [b for b in bays if b not in pledged]
    boxes = [b for b in free if spec.commodities[b.commodity].shape == "box"]
    leaving = [f"{b.id}-{n:02d}" for b in free for n in range(1, b.initial_lots + 1)]
    released = [f"{b.id}-{n:02d}" for b in bank_b for n in range(1, b.initial_lots + 1)
                if spec.commodities[b.commodity].shape == "box"][:2]
    hours = spec.working_hours
    working = WEEKDAYS[day.weekday()] in hours.days
    ops = []
    if working:
        for k, minute in enumerate(range(hours.start_hour * 60, hours.end_hour * 60, TRUCK_EVERY_MIN)):
            if k % 2 == 0 and boxes:
                bay = boxes[(k // 2) % len(boxes)]
                ops.append(f"  - {{kind: inbound, at: {minute}m, commodity: {bay.commodity}, count: 3, bay: {bay.id}}}")
            elif len(leaving) >= 2:
                lots = ", ".join(leaving.pop((7 * k) % len(leaving)) for _ in range(2))
                ops.append(f"  - {{kind: outbound, at: {minute}m, lots: [{lots}]}}")
        if released:
            ops.append(f"  - {{kind: release, at: 720m, loan: LN-B-001, lots: [{', '.join(released)}]}}")
            ops.append(f"  - {{kind: outbound, at: 735m, lots: [{', '.join(released)}]}}")
    ops.sort(key=lambda line: int(line.split("at: ")[1].split("m")[0]))
    def amount(bays) -> int:
        """Half the collateral's value at list price: a loan a bank would make (LTV 50 %)."""
        value = sum(b.initial_lots * sum(spec.commodities[b.commodity].mass_kg) / 2 / 1000
                    * spec.commodities[b.commodity].value_cny_per_t for b in bays)
        return round(LOAN_TO_VALUE * value, -3)

    loans = [f"  - {{id: LN-A-001, bank: bank-a, borrower: 华东金属贸易有限公司, amount_cny: {amount(bank_a):.0f}, "
             f"bays: [{', '.join(b.id for b in bank_a)}]}}"]
    if bank_b:
        loans.append(f"  - {{id: LN-B-001, bank: bank-b, borrower: 江南电缆有限公司, amount_cny: {amount(bank_b):.0f}, "
                     f"bays: [{', '.join(b.id for b in bank_b)}]}}")
    return "\n".join([
        f"scenario: honest-{site_name}-{day.isoformat()}",
        f"description: An honest day at {site_name} ({WEEKDAYS[day.weekday()]}); every alert is a false alarm.",
        f"site: {site_name}",
        f"seed: {seed}",
        f'start: "{day.isoformat()}T00:00"',
        "duration: 24h",
        f"twin: {{lidar_scans: {'true' if lidar_scans else 'false'}}}",
        "loans:",
        *loans,
        "operations:" if ops else "operations: []",
        *ops,
        "expectations:",
        "  - {kind: no-false-alarms}",
    ]) + "\n"
