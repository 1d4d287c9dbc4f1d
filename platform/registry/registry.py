"""The cross-bank pledge registry, modelled on the national unified registry (中登网).

Banks file registrations, ownership transfers and cancellations (releases). Nothing filed is
public at once: each filing becomes visible `lag_s` after it was filed, and only visible
filings can be searched. That lag is the window in which a second bank can lend against goods
already pledged, and so the onset of a duplicate pledge is when the second registration
becomes visible.

The registry keeps no clock: callers pass `now`. `events_until(now)` hands out, once each and in
visibility order, the events that became visible since the previous call; a filing that would
become visible at or before that published horizon is back-dated and refused, so the published
history never changes. Queries at a time `at` see exactly the events visible at `at`.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable
from typing import Any, Literal

import msgspec

from cangtwin.platform.registry.fingerprint import Fingerprint, FingerprintMatch, Quantum, mass_window, match


class RegistryError(ValueError):
    """A filing or query the registry refuses; the message names the filing and the reason."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise RegistryError(message)


def _finite(value: float, what: str) -> None:
    _require(isinstance(value, (int, float)) and math.isfinite(value), f"{what} must be a finite time, got {value!r}")


def _named(obj: Any, what: str, fields: tuple[str, ...]) -> None:
    for name in fields:
        _require(bool(getattr(obj, name)), f"{what}: {name} is empty")


class Filing(msgspec.Struct, frozen=True):
    """A bank's registration of a pledge (质押登记) over the goods behind one receipt."""

    registration: str
    bank: str
    pledgor: str
    site: str
    receipt: str
    fingerprint: Fingerprint
    filed_at: float

    def __post_init__(self) -> None:
        what = f"registration {self.registration or '?'}"
        _named(self, what, ("registration", "bank", "pledgor", "site", "receipt"))
        _finite(self.filed_at, f"{what}: filed_at")
        _require(
            self.fingerprint.receipt == self.receipt,
            f"{what}: fingerprint is of receipt {self.fingerprint.receipt}, not {self.receipt}",
        )


class Transfer(msgspec.Struct, frozen=True):
    """A transfer of ownership of goods, naming them by registration, receipt and/or fingerprint."""

    transfer: str
    from_owner: str
    to_owner: str
    at: float
    registration: str | None = None
    receipt: str | None = None
    fingerprint: Fingerprint | None = None

    def __post_init__(self) -> None:
        what = f"transfer {self.transfer or '?'}"
        _named(self, what, ("transfer", "from_owner", "to_owner"))
        _finite(self.at, f"{what}: at")
        _require(self.from_owner != self.to_owner, f"{what}: from_owner and to_owner are both {self.to_owner}")
        _require(
            any(x is not None for x in (self.registration, self.receipt, self.fingerprint)),
            f"{what}: names no goods (give a registration, a receipt or a fingerprint)",
        )
        _require(self.registration != "" and self.receipt != "", f"{what}: an empty registration or receipt id")
        if self.fingerprint is not None and self.receipt is not None:
            _require(
                self.fingerprint.receipt == self.receipt,
                f"{what}: fingerprint is of receipt {self.fingerprint.receipt}, not {self.receipt}",
            )


class Cancellation(msgspec.Struct, frozen=True):
    """A release of a registration (注销登记), filed by the bank that registered it."""

    registration: str
    bank: str
    at: float

    def __post_init__(self) -> None:
        what = f"cancellation of {self.registration or '?'}"
        _named(self, what, ("registration", "bank"))
        _finite(self.at, f"{what}: at")


class RegistrationVisible(msgspec.Struct, frozen=True, tag="registration-visible"):
    registration: str
    bank: str
    pledgor: str
    site: str
    receipt: str
    fingerprint: Fingerprint
    filed_at: float
    visible_at: float


class TransferVisible(msgspec.Struct, frozen=True, tag="transfer-visible"):
    transfer: str
    from_owner: str
    to_owner: str
    registration: str | None
    receipt: str | None
    fingerprint: Fingerprint | None
    filed_at: float
    visible_at: float


class CancellationVisible(msgspec.Struct, frozen=True, tag="cancellation-visible"):
    registration: str
    bank: str
    receipt: str
    filed_at: float
    visible_at: float


RegistryEvent = RegistrationVisible | TransferVisible | CancellationVisible
Status = Literal["pending", "active", "cancelled"]

# Within one instant a registration precedes transfers and cancellations that refer to it.
_RANK = {RegistrationVisible: 0, TransferVisible: 1, CancellationVisible: 2}


def event_key(event: RegistryEvent) -> tuple[float, float, int, str]:
    """Visibility order: by visible time, then filed time, kind and id (independent of filing order)."""
    ident = event.transfer if isinstance(event, TransferVisible) else event.registration
    return (event.visible_at, event.filed_at, _RANK[type(event)], ident)


class PledgeRegistry:
    """The registry's filings, its public feed and its public search (see the module docstring)."""

    def __init__(self, lag_s: float = 600.0) -> None:
        _require(isinstance(lag_s, (int, float)) and math.isfinite(lag_s) and lag_s >= 0,
                 f"lag_s must be a finite number of seconds >= 0, got {lag_s!r}")
        self.lag_s = float(lag_s)
        self.horizon = -math.inf  # everything visible up to here has been handed out
        self._registrations: dict[str, RegistrationVisible] = {}
        self._cancellations: dict[str, CancellationVisible] = {}
        self._transfers: dict[str, TransferVisible] = {}
        self._keys: list[tuple[float, float, int, str]] = []
        self._events: list[RegistryEvent] = []
        self._handed_out = 0
        self._by_receipt: dict[str, set[str]] = {}
        self._by_tag: dict[str, set[str]] = {}
        self._by_lot: dict[str, set[str]] = {}
        self._masses: list[tuple[float, str]] = []  # (total mass, registration), sorted

    # Filing

    def file(self, filing: Filing) -> RegistrationVisible:
        what = f"registration {filing.registration}"
        _require(filing.registration not in self._registrations, f"{what}: already filed")
        event = RegistrationVisible(
            filing.registration, filing.bank, filing.pledgor, filing.site, filing.receipt,
            filing.fingerprint, filing.filed_at, filing.filed_at + self.lag_s,
        )
        self._check_not_backdated(event, what)
        self._registrations[filing.registration] = event
        fp = filing.fingerprint
        self._by_receipt.setdefault(filing.receipt, set()).add(filing.registration)
        for tag in fp.tags:
            self._by_tag.setdefault(tag, set()).add(filing.registration)
        for lot in fp.lot_ids:
            self._by_lot.setdefault(lot, set()).add(filing.registration)
        insort(self._masses, (fp.total_mass_kg, filing.registration))
        self._publish(event)
        return event

    def transfer(self, transfer: Transfer) -> TransferVisible:
        what = f"transfer {transfer.transfer}"
        _require(transfer.transfer not in self._transfers, f"{what}: already filed")
        if transfer.registration is not None:
            registered = self._registrations.get(transfer.registration)
            _require(registered is not None, f"{what}: unknown registration {transfer.registration}")
            name = registered.registration
            _require(transfer.at >= registered.filed_at,
                     f"{what}: at {transfer.at} precedes registration {name} (filed {registered.filed_at})")
            _require(transfer.receipt in (None, registered.receipt),
                     f"{what}: receipt {transfer.receipt} is not the receipt of {name} ({registered.receipt})")
        event = TransferVisible(
            transfer.transfer, transfer.from_owner, transfer.to_owner, transfer.registration,
            transfer.receipt, transfer.fingerprint, transfer.at, transfer.at + self.lag_s,
        )
        self._check_not_backdated(event, what)
        self._transfers[transfer.transfer] = event
        self._publish(event)
        return event

    def cancel(self, cancellation: Cancellation) -> CancellationVisible:
        what = f"cancellation of {cancellation.registration}"
        registered = self._registrations.get(cancellation.registration)
        _require(registered is not None, f"{what}: unknown registration")
        _require(cancellation.registration not in self._cancellations, f"{what}: already cancelled")
        _require(cancellation.bank == registered.bank,
                 f"{what}: filed by {cancellation.bank}, but only the registering bank {registered.bank} may cancel")
        _require(cancellation.at >= registered.filed_at,
                 f"{what}: at {cancellation.at} precedes the registration (filed {registered.filed_at})")
        event = CancellationVisible(
            cancellation.registration, cancellation.bank, registered.receipt, cancellation.at,
            cancellation.at + self.lag_s,
        )
        self._check_not_backdated(event, what)
        self._cancellations[cancellation.registration] = event
        self._publish(event)
        return event

    def _check_not_backdated(self, event: RegistryEvent, what: str) -> None:
        _require(
            event.visible_at > self.horizon,
            f"{what}: filed at {event.filed_at} it would be visible at {event.visible_at}, but the registry "
            f"has already published everything up to {self.horizon}; back-dated filings are refused",
        )

    def _publish(self, event: RegistryEvent) -> None:
        key = event_key(event)
        i = bisect_right(self._keys, key)
        self._keys.insert(i, key)
        self._events.insert(i, event)

    # The public feed

    def visible(self, now: float) -> tuple[RegistryEvent, ...]:
        """Every event visible at `now`, in visibility order."""
        _finite(now, "now")
        return tuple(self._events[: self._count_visible(now)])

    def events_until(self, now: float) -> tuple[RegistryEvent, ...]:
        """The events that became visible since the previous call, in order; advances the horizon."""
        _finite(now, "now")
        _require(now >= self.horizon, f"now {now} is before the published horizon {self.horizon}")
        end = self._count_visible(now)
        fresh = tuple(self._events[self._handed_out : end])
        self._handed_out, self.horizon = end, now
        return fresh

    def _count_visible(self, now: float) -> int:
        return bisect_right(self._keys, (now, math.inf, math.inf, ""))

    # Public queries, as of a time

    def registration(self, registration: str) -> RegistrationVisible:
        found = self._registrations.get(registration)
        _require(found is not None, f"unknown registration {registration}")
        return found

    def status(self, registration: str, at: float) -> Status:
        """What a searcher at `at` sees: not yet visible, active, or cancelled."""
        event = self.registration(registration)
        if event.visible_at > at:
            return "pending"
        cancelled = self._cancellations.get(registration)
        return "cancelled" if cancelled is not None and cancelled.visible_at <= at else "active"

    def active(self, at: float) -> tuple[RegistrationVisible, ...]:
        found = (e for e in self._registrations.values() if self.status(e.registration, at) == "active")
        return tuple(sorted(found, key=event_key))

    def search(
        self,
        at: float,
        *,
        tag: str | None = None,
        lot: str | None = None,
        receipt: str | None = None,
        weight_of: Fingerprint | None = None,
        quantum: Quantum = Quantum(),
        include_cancelled: bool = False,
    ) -> tuple[RegistrationVisible, ...]:
        """Registrations visible at `at` that share one named fingerprint component (give exactly one)."""
        given = [x for x in (tag, lot, receipt, weight_of) if x is not None]
        _require(len(given) == 1, "search needs exactly one of tag, lot, receipt or weight_of")
        if weight_of is not None:
            return tuple(e for e, m in self.matches(weight_of, at, quantum, include_cancelled) if m.weight)
        if tag is not None:
            ids = self._by_tag.get(tag, ())
        elif lot is not None:
            ids = self._by_lot.get(lot, ())
        else:
            ids = self._by_receipt.get(receipt, ())
        return self._visible_sorted(ids, at, include_cancelled)

    def matches(
        self, fingerprint: Fingerprint, at: float, quantum: Quantum = Quantum(), include_cancelled: bool = False
    ) -> list[tuple[RegistrationVisible, FingerprintMatch]]:
        """Registrations visible at `at` sharing any component with `fingerprint`, and which ones."""
        candidates = set(self._by_receipt.get(fingerprint.receipt, ()))
        for tag in fingerprint.tags:
            candidates |= self._by_tag.get(tag, set())
        for lot in fingerprint.lot_ids:
            candidates |= self._by_lot.get(lot, set())
        lo, hi = mass_window(fingerprint.total_mass_kg, quantum)
        start = bisect_left(self._masses, (lo, ""))
        stop = bisect_right(self._masses, (hi, "\U0010ffff"))
        candidates.update(reg for _, reg in self._masses[start:stop])
        found = []
        for event in self._visible_sorted(candidates, at, include_cancelled):
            m = match(fingerprint, event.fingerprint, quantum)
            if m.components:
                found.append((event, m))
        return found

    def _visible_sorted(self, ids: Iterable[str], at: float, include_cancelled: bool) -> tuple[RegistrationVisible, ...]:
        allowed = ("active", "cancelled") if include_cancelled else ("active",)
        found = (self._registrations[r] for r in ids if self.status(r, at) in allowed)
        return tuple(sorted(found, key=event_key))


def registry_of(ctx: Any) -> PledgeRegistry:
    """The registry a cloud rule reads, from `ctx.extra["registry"]`."""
    registry = ctx.extra.get("registry")
    if not isinstance(registry, PledgeRegistry):
        raise LookupError("registry rules need the PledgeRegistry in CloudContext.extra['registry'], found none")
    return registry
