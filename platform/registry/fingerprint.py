"""Goods fingerprints: what a registration says about the goods, and when two describe the same goods.

A fingerprint holds a receipt's id and, per lot, its lot id, RFID tag, commodity, declared mass
and (when measured) its outer dimensions. Two fingerprints match on any of four components:

- `receipt`: the same receipt id (a copied 电子仓单);
- `tags`: a shared RFID tag (EPC ids are globally unique by design);
- `lots`: a shared lot id (lot ids are warehouse-local, so callers decide where that counts);
- `weight`: the same weight and dimension signature, which survives relabelling.

Quantisation. Masses are binned on a log scale, `bin = floor(ln(m) / ln(1 + r))` with r the
relative tolerance; dimensions (sorted, so orientation does not matter) are binned linearly,
`floor(d / t)`. Two values match when their bins differ by at most one. Hence a re-weighing
within r (a ratio up to 1 + r), or a re-measure within t, always matches, and values more than
a ratio (1 + r)² or 2t apart never do; between those the bin boundaries decide. Log bins make
the tolerance relative, as scale errors are: OIML R76 class III limits grow with the load, and
the total of a 40-lot receipt errs by the sum of its lots' errors. Integer signatures, rather
than raw floats, are what a registry can publish in place of weigh tickets, and they compare
exactly: equal goods give equal or neighbouring bins on every machine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import msgspec
import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching

COMPONENTS = ("receipt", "tags", "lots", "weight")


class FingerprintError(ValueError):
    """A fingerprint that cannot describe real goods (no lots, a weightless lot, a repeated tag)."""


def _positive(value: float, what: str) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise FingerprintError(f"{what} must be a positive finite number, got {value!r}")


class LotGoods(msgspec.Struct, frozen=True):
    """One lot as a receipt declares it. `dims_m` is (length, width, height) in metres, if measured."""

    lot: str
    tag: str
    commodity: str
    mass_kg: float
    dims_m: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        for name in ("lot", "tag", "commodity"):
            if not getattr(self, name):
                raise FingerprintError(f"lot {self.lot or '?'}: {name} is empty")
        _positive(self.mass_kg, f"lot {self.lot}: mass_kg")
        if self.dims_m is not None:
            for d in self.dims_m:
                _positive(d, f"lot {self.lot}: dims_m")


class Fingerprint(msgspec.Struct, frozen=True):
    """The goods behind one receipt. Valid by construction (decoding checks it too)."""

    receipt: str
    lots: tuple[LotGoods, ...]

    def __post_init__(self) -> None:
        if not self.receipt:
            raise FingerprintError("receipt id is empty")
        if not self.lots:
            raise FingerprintError(f"receipt {self.receipt}: no lots")
        for field, values in (("lot id", self.lot_ids), ("tag", self.tags)):
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise FingerprintError(f"receipt {self.receipt}: {field} listed twice: {', '.join(repeated)}")

    @property
    def lot_ids(self) -> tuple[str, ...]:
        return tuple(g.lot for g in self.lots)

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(g.tag for g in self.lots)

    @property
    def total_mass_kg(self) -> float:
        return math.fsum(g.mass_kg for g in self.lots)


def fingerprint_from_book(
    book: Any, receipt_id: str, dims_m: Mapping[str, tuple[float, float, float]] | None = None
) -> Fingerprint:
    """The fingerprint of a receipt in a CollateralBook; `dims_m` adds measured dimensions per lot."""
    dims_m = dims_m or {}
    receipt = book.receipts.get(receipt_id)
    if receipt is None:
        raise FingerprintError(f"receipt {receipt_id} is not in the collateral book")
    goods = []
    for lot_id in receipt.lots:
        lot = book.lots.get(lot_id)
        if lot is None:
            raise FingerprintError(f"receipt {receipt_id}: lot {lot_id} is not in the collateral book")
        goods.append(LotGoods(lot.id, lot.tag, lot.commodity, lot.mass_kg, dims_m.get(lot.id)))
    return Fingerprint(receipt_id, tuple(goods))


class Quantum(msgspec.Struct, frozen=True):
    """The signature resolution: relative mass tolerance and absolute dimension tolerance (m)."""

    mass_rel_tol: float = 0.005
    dim_tol_m: float = 0.05

    def __post_init__(self) -> None:
        if not (0 < self.mass_rel_tol <= 0.5):
            raise FingerprintError(f"mass_rel_tol must be in (0, 0.5], got {self.mass_rel_tol!r}")
        if not (0 < self.dim_tol_m <= 10):
            raise FingerprintError(f"dim_tol_m must be in (0, 10], got {self.dim_tol_m!r}")

    def mass_bin(self, mass_kg: float) -> int:
        return math.floor(math.log(mass_kg) / math.log1p(self.mass_rel_tol))

    def dim_bins(self, dims_m: tuple[float, float, float] | None) -> tuple[int, ...] | None:
        if dims_m is None:
            return None
        return tuple(math.floor(d / self.dim_tol_m) for d in sorted(dims_m, reverse=True))


class LotSignature(msgspec.Struct, frozen=True):
    commodity: str
    mass: int
    dims: tuple[int, ...] | None


class WeightSignature(msgspec.Struct, frozen=True):
    """The quantised weight and dimension signature: total mass bin and sorted per-lot bins."""

    total: int
    lots: tuple[LotSignature, ...]


def weight_signature(fp: Fingerprint, quantum: Quantum) -> WeightSignature:
    lots = sorted(
        (LotSignature(g.commodity, quantum.mass_bin(g.mass_kg), quantum.dim_bins(g.dims_m)) for g in fp.lots),
        key=lambda s: (s.commodity, s.mass, s.dims or ()),
    )
    return WeightSignature(quantum.mass_bin(fp.total_mass_kg), tuple(lots))


def _near(a: int, b: int) -> bool:
    return abs(a - b) <= 1


def _lots_compatible(a: LotSignature, b: LotSignature) -> bool:
    """Same commodity, mass within a bin; dimensions compared only when both sides measured them."""
    if a.commodity != b.commodity or not _near(a.mass, b.mass):
        return False
    if a.dims is None or b.dims is None:
        return True
    return all(_near(x, y) for x, y in zip(a.dims, b.dims))


def signatures_match(a: WeightSignature, b: WeightSignature) -> bool:
    """The same goods: totals within a bin and a one-to-one pairing of compatible lots."""
    if len(a.lots) != len(b.lots) or not _near(a.total, b.total):
        return False
    n = len(a.lots)
    compatible = np.array([[_lots_compatible(x, y) for y in b.lots] for x in a.lots], dtype=np.int8)
    # A perfect bipartite matching must exist; scipy's Hopcroft-Karp decides it.
    pairs = maximum_bipartite_matching(csr_matrix(compatible), perm_type="column")
    return int((pairs >= 0).sum()) == n


class FingerprintMatch(msgspec.Struct, frozen=True):
    """Which components two fingerprints share; symmetric in its two arguments."""

    receipt: bool
    tags: tuple[str, ...]
    lots: tuple[str, ...]
    weight: bool

    @property
    def components(self) -> tuple[str, ...]:
        present = {"receipt": self.receipt, "tags": bool(self.tags), "lots": bool(self.lots), "weight": self.weight}
        return tuple(c for c in COMPONENTS if present[c])


def match(a: Fingerprint, b: Fingerprint, quantum: Quantum = Quantum()) -> FingerprintMatch:
    return FingerprintMatch(
        receipt=a.receipt == b.receipt,
        tags=tuple(sorted(set(a.tags) & set(b.tags))),
        lots=tuple(sorted(set(a.lot_ids) & set(b.lot_ids))),
        weight=signatures_match(weight_signature(a, quantum), weight_signature(b, quantum)),
    )


def mass_window(total_mass_kg: float, quantum: Quantum) -> tuple[float, float]:
    """Totals that can possibly match `total_mass_kg` at this quantum (bins at most one apart)."""
    ratio = (1.0 + quantum.mass_rel_tol) ** 2
    return total_mass_kg / ratio, total_mass_kg * ratio
