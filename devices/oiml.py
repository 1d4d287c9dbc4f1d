"""OIML limits the weighbridge model is judged against, as data: R76 class III and R60 class C3.

Sources (the documents themselves are not in the repository; see docs/loadcell.md for which figures
are certain and which are conservative picks):
- OIML R76-1:2006 "Non-automatic weighing instruments", the instrument (weighbridge + indicator);
- OIML R60:2000 "Metrological regulation for load cells", the load cells under the plate.
The class III maximum permissible errors are also restated in shared/standards/README.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# R76-1 3.5.1, table 6 (class III) and R60 table 5 (class C, in load-cell intervals v): the error
# limit is a step function of the load counted in divisions. (upper bound in divisions, mpe in
# divisions); each band includes its upper bound.
_CLASS_III_BANDS: tuple[tuple[float, float], ...] = ((500.0, 0.5), (2000.0, 1.0), (10000.0, 1.5))
# Relative slack so that a load computed as e.g. 500 * 20.0 kg lands in the band it names.
_BAND_EDGE_SLACK = 1e-9


def _positive_finite(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def _mpe_divisions(load_kg: float, division_kg: float, *, what: str) -> float:
    """Maximum permissible error in divisions, per the bands class III and class C share."""
    if not math.isfinite(load_kg):
        raise ValueError(f"load_kg must be finite, got {load_kg!r}")
    divisions = abs(load_kg) / division_kg
    for upper, mpe in _CLASS_III_BANDS:
        if divisions <= upper * (1.0 + _BAND_EDGE_SLACK):
            return mpe
    raise ValueError(
        f"load {load_kg!r} kg is {divisions:.1f} {what}, above the 10000 that the class covers"
    )


def mpe_class_iii(load_kg: float, e_kg: float, *, in_service: bool = False) -> float:
    """R76 class III maximum permissible error (kg, a magnitude) at a load.

    Initial verification: 0-500e ±0.5e, 500-2000e ±1.0e, 2000-10000e ±1.5e (R76-1 3.5.1, table 6);
    in service the limits are twice these (R76-1 3.5.2). The sign of the load is ignored: the same
    limits apply to net values after tare (R76-1 3.5.3.3).
    """
    _positive_finite("e_kg", e_kg)
    mpe = _mpe_divisions(load_kg, e_kg, what="verification divisions e") * e_kg
    return 2.0 * mpe if in_service else mpe


def mpe_load_cell_class_c(load_kg: float, v_kg: float, p_lc: float) -> float:
    """R60 class C load-cell maximum permissible error (kg): p_LC times the bands, in v."""
    _positive_finite("v_kg", v_kg)
    if not 0.0 < p_lc <= 1.0:
        raise ValueError(f"p_lc must be in (0, 1], got {p_lc!r}")
    return p_lc * _mpe_divisions(load_kg, v_kg, what="load-cell verification intervals v") * v_kg


@dataclass(frozen=True, slots=True)
class R76ClassIII:
    """Limits for a class III non-automatic weighing instrument as a whole (OIML R76-1:2006)."""

    # 3.2, table 3: for e >= 5 g the number of divisions n = Max/e lies in 500..10000, Min = 20e.
    n_min: int = 500
    n_max: int = 10000
    min_capacity_e: float = 20.0
    # 3.9.2.1: without special marking the instrument works from -10 °C to +40 °C.
    temperature_range_c: tuple[float, float] = (-10.0, 40.0)
    # 3.9.2.3: the no-load indication may move by at most 1e per 5 °C (classes II, III, IIII).
    zero_temperature_e: float = 1.0
    zero_temperature_step_c: float = 5.0
    # 3.9.4.1: creep under a constant load, 0.5e over 30 min and 0.2e between minute 15 and 30.
    creep_30min_e: float = 0.5
    creep_15_30min_e: float = 0.2
    # 3.9.4.2: return to zero after a 30 min load, at most 0.5e.
    zero_return_e: float = 0.5
    # 4.5.1: zero-setting plus zero-tracking together act over at most 4 % of Max.
    zero_range_fraction: float = 0.04
    # 4.5.7 (clause number from memory): zero-tracking only at zero, when stable, at <= 0.5e/s.
    zero_tracking_rate_e_per_s: float = 0.5
    # Module compatibility (R76-1 annex F, clause number from memory): v_min * sqrt(N) <= e.
    vmin_sqrt_n_max_e: float = 1.0


@dataclass(frozen=True, slots=True)
class R60ClassC:
    """Load-cell limits for OIML R60:2000 accuracy class C with a given n_LC (C3: n_LC = 3000).

    Figures marked "conservative" are where the exact R60 wording was not at hand when this was
    written; the tighter of the plausible readings was taken (see docs/loadcell.md).
    """

    # R60 2.x / 5.1: class designation C3 = class C, maximum number of load-cell intervals 3000.
    n_lc: int = 3000
    # R60 5.2 (and R76-1 3.5.4): apportionment factor of the instrument mpe given to the load cell;
    # 0.7 is the value assumed when none is declared (allowed 0.3..0.8).
    p_lc: float = 0.7
    # Class C covers 500..10000 intervals.
    n_lc_min: int = 500
    n_lc_max: int = 10000
    # R60 5.5.1 creep: over 30 min at Dmax (90-100 % of Emax) the reading moves at most |mpe_LC|;
    # between minute 20 and 30 at most 0.15 |mpe_LC| (conservative: the 0.15 is taken on the
    # apportioned mpe_LC = p_LC * mpe, not on the instrument mpe).
    creep_30min_mpe: float = 1.0
    creep_20_30min_mpe: float = 0.15
    # R60 5.5.2 minimum dead load output return (DR) after 30 min at Dmax: at most 0.5 v.
    dr_v: float = 0.5
    # R60 5.5.3.2: minimum dead load output moves at most p_LC * v_min per 5 °C (classes B, C, D;
    # per 2 °C for class A).
    mdlo_temperature_step_c: float = 5.0

    def mpe(self, load_kg: float, v_kg: float) -> float:
        """Load-cell mpe (kg) at a load, in intervals v of this cell."""
        return mpe_load_cell_class_c(load_kg, v_kg, self.p_lc)

    def creep_limit_30min_kg(self, emax_kg: float) -> float:
        """Largest permitted 30-min creep at Dmax = Emax for a cell of this class and capacity."""
        v_kg = emax_kg / self.n_lc
        return self.creep_30min_mpe * self.mpe(emax_kg, v_kg)

    def creep_limit_20_30min_kg(self, emax_kg: float) -> float:
        """Largest permitted creep from minute 20 to 30 at Dmax = Emax (conservative reading)."""
        v_kg = emax_kg / self.n_lc
        return self.creep_20_30min_mpe * self.mpe(emax_kg, v_kg)

    def dr_limit_kg(self, emax_kg: float) -> float:
        """Largest permitted minimum dead load output return after 30 min at Emax, for one cell."""
        return self.dr_v * emax_kg / self.n_lc

    def mdlo_temperature_limit_kg_per_c(self, vmin_kg: float) -> float:
        """Largest permitted drift of the minimum dead load output, kg per °C, for one cell."""
        return self.p_lc * vmin_kg / self.mdlo_temperature_step_c


R76_CLASS_III = R76ClassIII()
R60_C3 = R60ClassC()
