"""Weighbridge load cells and indicator: from the true force on the plate to the number on the wire.

The chain mirrors the hardware. `LoadCellChannel` is the summed analogue signal of the cells under
the plate (junction box): first-order settling, creep, hysteresis, span and zero temperature drift,
calibration span error and Gaussian noise. `WeighbridgeIndicator` is the digital indicator behind
it: zero-tracking and semi-automatic zero-setting, a motion detector, quantisation to e, and the
remote-control cheat hook. `WeighbridgeBatch` steps many identical scales at once with numpy.

Stepping is hand-written in plain floats rather than numpy for the single scale because numpy's
per-call overhead (~1 µs per ufunc on a scalar) would dominate a 10 Hz step; the batch pays it once
per step for all scales instead. Noise is drawn from the caller's generator in blocks for the same
reason, so a model is deterministic given its generator.

Parameter sources are in docs/loadcell.md; the limits themselves live in `cangtwin.devices.oiml`.
"""

from __future__ import annotations

import math

import msgspec
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cangtwin.devices.oiml import R60_C3, R76_CLASS_III, mpe_class_iii

# Standard normals drawn per refill; large enough to amortise the draw, small enough to not matter.
_NOISE_BLOCK = 4096
# Creep figures are judged at these times (R76-1 3.9.4.1, R60 5.5.1), seconds.
_MIN_15, _MIN_20, _MIN_30 = 900.0, 1200.0, 1800.0
# Readings are judged within +-NOISE_K sigma of noise: 5 sigma is exceeded once in ~1.7 million.
NOISE_K = 5.0
# The verification ("service") resolution of the indicator, as a fraction of e (R76 uses e/10).
FINE_DIVISION_E = 0.1


class LoadCellParams(BaseModel):
    """Metrology of one weighbridge; by default 60 t, e = 20 kg, class III, on six C3 cells.

    Every field is validated on construction; a physically impossible value raises a
    `pydantic.ValidationError` naming the field. Possible but non-conforming values (a scale out of
    legal limits) are allowed, so that faulty scales can be modelled; `oiml_nonconformities` lists
    which OIML limits they break.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    max_kg: float = Field(60_000.0, gt=0, description="Max, the maximum capacity")
    e_kg: float = Field(20.0, gt=0, description="verification scale interval e")
    n_cells: int = Field(6, ge=1, description="number of load cells under the plate")
    cell_capacity_kg: float = Field(30_000.0, gt=0, description="Emax of each cell")
    cell_n_lc: int = Field(R60_C3.n_lc, ge=1, description="R60 n_LC of the cells (C3: 3000)")
    cell_y: float = Field(10_000.0, gt=0, description="Y = Emax / v_min of the cells")
    noise_sigma_kg: float = Field(1.0, ge=0, description="std dev of the filtered reading noise")
    settle_tau_s: float = Field(0.4, gt=0, description="first-order settling time constant")
    creep_fraction: float = Field(1e-4, ge=0, lt=1, description="final creep / applied load")
    creep_tau_s: float = Field(600.0, gt=0, description="creep time constant")
    hysteresis_fraction: float = Field(5e-5, ge=0, lt=1, description="half loop width / load")
    hysteresis_width_fraction: float = Field(
        0.05, gt=0, le=1, description="load change (fraction of Max) that turns the loop over"
    )
    span_error: float = Field(0.0, gt=-1, lt=1, description="calibration error, indicated/true-1")
    span_tc_per_c: float = Field(1.5e-6, ge=-1e-3, le=1e-3, description="span change per °C")
    zero_tc_kg_per_c: float = Field(0.15, description="zero (no-load output) change per °C")
    reference_temperature_c: float = Field(20.0, ge=-60, le=80, description="adjustment temp.")
    stable_band_e: float = Field(1.0, gt=0, description="motion band, ± this many e")
    stable_window_s: float = Field(1.0, gt=0, description="time inside the band to be stable")
    zero_tracking: bool = Field(True, description="automatic zero-tracking switched on")
    zero_tracking_tau_s: float = Field(2.0, gt=0, description="averaging time of zero-tracking")

    @model_validator(mode="after")
    def _coherent(self) -> LoadCellParams:
        if self.e_kg >= self.max_kg:
            raise ValueError(f"e_kg ({self.e_kg}) must be smaller than max_kg ({self.max_kg})")
        if abs(self.zero_tc_kg_per_c) * 100.0 > self.max_kg:
            raise ValueError(
                f"zero_tc_kg_per_c ({self.zero_tc_kg_per_c}) moves zero by more than Max "
                "over 100 °C"
            )
        return self

    @property
    def n_divisions(self) -> float:
        """n = Max / e, the number of verification divisions."""
        return self.max_kg / self.e_kg

    @property
    def cell_vmin_kg(self) -> float:
        """v_min of each cell, Emax / Y."""
        return self.cell_capacity_kg / self.cell_y

    def creep_kg(self, load_kg: float, t_s: float) -> float:
        """Creep of the whole bridge t_s after a step to load_kg (the model's own law)."""
        return self.creep_fraction * load_kg * -math.expm1(-t_s / self.creep_tau_s)

    def settling_time_s(self, step_kg: float) -> float:
        """Bound on the time from a load step until the indicator reports stable.

        The filter residual must fall below the motion band less the noise spread (two readings
        each within NOISE_K sigma), then stay there for the stable window. Infinite when the noise
        alone can leave the band: such a scale never settles reliably.
        """
        room = self.stable_band_e * self.e_kg - 2.0 * NOISE_K * self.noise_sigma_kg
        if room <= 0.0:
            return math.inf
        decay = self.settle_tau_s * math.log(max(abs(step_kg) / room, 1.0))
        return decay + self.stable_window_s

    def worst_error_kg(self, load_kg: float, temperature_c: float) -> float:
        """Worst stable error at a load and temperature once zero is set at that temperature.

        Span (calibration and temperature), the widest hysteresis loop the model can reach (after a
        load to Max) and NOISE_K sigma of noise; creep is excluded because a weighing is read
        seconds after the load settles, and is judged separately over 30 min.
        """
        warm = temperature_c - self.reference_temperature_c
        span = abs(self.span_error + self.span_tc_per_c * warm)
        return (
            span * abs(load_kg)
            + self.hysteresis_fraction * self.max_kg
            + NOISE_K * self.noise_sigma_kg
        )

    def oiml_nonconformities(self) -> list[str]:
        """Which OIML R76 class III / R60 class C limits these parameters break (empty if none)."""
        r76, r60 = R76_CLASS_III, R60_C3
        issues: list[str] = []
        n, e = self.n_divisions, self.e_kg
        if not r76.n_min <= n <= r76.n_max:
            issues.append(f"R76 table 3: n = Max/e = {n:g} outside {r76.n_min}..{r76.n_max}")
        if not r60.n_lc_min <= self.cell_n_lc <= r60.n_lc_max:
            issues.append(
                f"R60 class C: n_LC = {self.cell_n_lc} outside {r60.n_lc_min}..{r60.n_lc_max}"
            )
        if self.cell_n_lc < n:
            issues.append(f"R76 annex F: cell n_LC = {self.cell_n_lc} below instrument n = {n:g}")
        vmin_sqrt_n = self.cell_vmin_kg * math.sqrt(self.n_cells)
        if vmin_sqrt_n > r76.vmin_sqrt_n_max_e * e:
            issues.append(f"R76 annex F: v_min*sqrt(N) = {vmin_sqrt_n:.3g} kg > e")
        if self.n_cells * self.cell_capacity_kg < self.max_kg:
            issues.append(f"capacity: {self.n_cells} x {self.cell_capacity_kg:g} kg < Max")
        zero_per_step = abs(self.zero_tc_kg_per_c) * r76.zero_temperature_step_c
        if zero_per_step > r76.zero_temperature_e * e:
            issues.append(f"R76 3.9.2.3: zero moves {zero_per_step:.3g} kg per 5 °C > 1e")
        # Cell zero drifts are taken as independent, so one cell carries bridge/sqrt(N): this
        # attributes the most drift to each cell, the conservative reading.
        cell_zero_tc = abs(self.zero_tc_kg_per_c) / math.sqrt(self.n_cells)
        if cell_zero_tc > r60.mdlo_temperature_limit_kg_per_c(self.cell_vmin_kg):
            issues.append(
                f"R60 5.5.3.2: cell minimum dead load output drifts {cell_zero_tc:.3g} kg/°C"
            )
        creep_30 = self.creep_kg(self.max_kg, _MIN_30)
        creep_15_30 = creep_30 - self.creep_kg(self.max_kg, _MIN_15)
        # The model's creep recovers by the same law, so the zero return equals the 30-min creep.
        if creep_30 > min(r76.creep_30min_e, r76.zero_return_e) * e:
            issues.append(
                f"R76 3.9.4.1/3.9.4.2: 30-min creep / zero return {creep_30:.3g} kg > 0.5e"
            )
        if creep_15_30 > r76.creep_15_30min_e * e:
            issues.append(f"R76 3.9.4.1: creep from minute 15 to 30 is {creep_15_30:.3g} kg > 0.2e")
        emax = self.cell_capacity_kg
        cell_30 = self.creep_kg(emax, _MIN_30)
        cell_20_30 = cell_30 - self.creep_kg(emax, _MIN_20)
        if cell_30 > min(r60.creep_limit_30min_kg(emax), r60.dr_limit_kg(emax)):
            issues.append(f"R60 5.5.1/5.5.2: cell 30-min creep / DR {cell_30:.3g} kg at Emax")
        if cell_20_30 > r60.creep_limit_20_30min_kg(emax):
            issues.append(f"R60 5.5.1: cell creep from minute 20 to 30 is {cell_20_30:.3g} kg")
        for divisions in (r76.min_capacity_e, r76.n_min, 2000.0, n):
            load = min(divisions * e, self.max_kg)
            for temperature in r76.temperature_range_c:
                worst = self.worst_error_kg(load, temperature)
                if worst > mpe_class_iii(load, e):
                    issues.append(
                        f"R76 3.5.1: worst error {worst:.3g} kg at {load:g} kg, {temperature:g} °C "
                        f"exceeds mpe {mpe_class_iii(load, e):g} kg"
                    )
        return issues


class Reading(msgspec.Struct, frozen=True, gc=False):
    """What the indicator shows: the legal reading in e, the motion flag, the e/10 service value."""

    indicated_kg: float
    stable: bool
    fine_kg: float


def _check_step(true_load_kg: float, dt_s: float, temperature_c: float) -> None:
    # One sum tests all three for NaN and infinity at the cost of one call.
    if not (dt_s > 0.0 and math.isfinite(true_load_kg + dt_s + temperature_c)):
        raise ValueError(
            "step needs finite true_load_kg and temperature_c and a positive finite dt_s, got "
            f"true_load_kg={true_load_kg!r}, dt_s={dt_s!r}, temperature_c={temperature_c!r}"
        )


class LoadCellChannel:
    """The summed analogue output of the cells, in kg of load above the plate's own dead load."""

    __slots__ = (
        "_creep", "_creep_fraction", "_dt", "_hyst", "_hyst_fraction", "_hyst_width", "_k_creep",
        "_k_settle", "_noise", "_noise_i", "_p", "_rng", "_settled", "_sigma",
    )

    def __init__(self, params: LoadCellParams, rng: np.random.Generator) -> None:
        self._p = params
        self._rng = rng
        self._sigma = params.noise_sigma_kg
        self._creep_fraction = params.creep_fraction
        self._hyst_fraction = params.hysteresis_fraction
        self._hyst_width = params.hysteresis_width_fraction * params.max_kg
        self._settled = 0.0
        self._creep = 0.0
        self._hyst = 0.0
        self._dt = math.nan
        self._k_settle = self._k_creep = 0.0
        self._noise: list[float] = []
        self._noise_i = 0

    def step(self, true_load_kg: float, dt_s: float, temperature_c: float) -> float:
        """Advance dt_s with the true load held over the step; return the analogue reading, kg."""
        _check_step(true_load_kg, dt_s, temperature_c)
        p = self._p
        if dt_s != self._dt:
            # Exact discretisation of the first-order laws for an input held over the step.
            self._dt = dt_s
            self._k_settle = -math.expm1(-dt_s / p.settle_tau_s)
            self._k_creep = -math.expm1(-dt_s / p.creep_tau_s)
        before = self._settled
        settled = before + self._k_settle * (true_load_kg - before)
        self._settled = settled
        self._creep += self._k_creep * (self._creep_fraction * settled - self._creep)
        moved = settled - before
        if moved != 0.0:
            # Rate-independent (Dahl-type) hysteresis: while the load rises the cells read low by up
            # to hysteresis_fraction of it, while it falls they read high; the branch turns over
            # within hysteresis_width of load travel after a reversal.
            target = self._hyst_fraction * (-settled if moved > 0.0 else settled)
            self._hyst += (target - self._hyst) * -math.expm1(-abs(moved) / self._hyst_width)
        if self._noise_i == len(self._noise):
            self._noise = self._rng.standard_normal(_NOISE_BLOCK).tolist()
            self._noise_i = 0
        noise = self._noise[self._noise_i]
        self._noise_i += 1
        warm = temperature_c - p.reference_temperature_c
        return (
            settled * (1.0 + p.span_error + p.span_tc_per_c * warm)
            + self._creep
            + self._hyst
            + p.zero_tc_kg_per_c * warm
            + self._sigma * noise
        )


class WeighbridgeIndicator:
    """A class III weighbridge: load cells plus indicator, stepped in time (e.g. at 10 Hz).

    `remote_offset_kg` is the remote-control cheat: a circuit that adds an offset to the indicated
    value. It acts after zero-tracking and the motion detector, as such circuits do, so it neither
    shows as motion nor is tracked away.
    """

    __slots__ = (
        "_band", "_channel", "_e", "_fine", "_gross", "_ref", "_stable", "_still", "_window",
        "_zero", "_zero_limit", "_zt_rate", "params", "remote_offset_kg",
    )

    def __init__(self, params: LoadCellParams, rng: np.random.Generator) -> None:
        self.params = params
        self.remote_offset_kg = 0.0
        self._channel = LoadCellChannel(params, rng)
        self._e = params.e_kg
        self._fine = params.e_kg * FINE_DIVISION_E
        self._band = params.stable_band_e * params.e_kg
        # A float tolerance so that ten steps of 0.1 s make a 1 s window.
        self._window = params.stable_window_s * (1.0 - 1e-9)
        self._zt_rate = R76_CLASS_III.zero_tracking_rate_e_per_s * params.e_kg
        self._zero_limit = R76_CLASS_III.zero_range_fraction * params.max_kg
        self._zero = 0.0
        self._gross = 0.0
        self._ref = math.inf
        self._still = 0.0
        self._stable = False

    @property
    def zero_offset_kg(self) -> float:
        """How far zero-setting and zero-tracking have moved zero from its adjusted position."""
        return self._zero

    def step(self, true_load_kg: float, dt_s: float, temperature_c: float) -> Reading:
        """Advance dt_s with the true load on the plate and return what the indicator shows."""
        gross = self._channel.step(true_load_kg, dt_s, temperature_c) - self._zero
        # Motion detector: stable once the reading has stayed within the band around a reference
        # reading for the window; leaving the band restarts the window from the new reading.
        if abs(gross - self._ref) > self._band:
            self._ref = gross
            self._still = 0.0
        else:
            self._still += dt_s
        stable = self._still >= self._window
        # Automatic zero-tracking (R76-1 4.5): only when stable and showing zero, at <= 0.5e/s,
        # within the zero range; it averages over zero_tracking_tau_s so as not to chase noise.
        if stable and self.params.zero_tracking and abs(gross) < 0.5 * self._e:
            step_limit = self._zt_rate * dt_s
            wanted = gross * min(1.0, dt_s / self.params.zero_tracking_tau_s)
            correction = max(-step_limit, min(step_limit, wanted))
            if abs(self._zero + correction) <= self._zero_limit:
                self._zero += correction
                gross -= correction
        self._gross = gross
        self._stable = stable
        shown = gross + self.remote_offset_kg
        return Reading(
            math.floor(shown / self._e + 0.5) * self._e,
            stable,
            math.floor(shown / self._fine + 0.5) * self._fine,
        )

    def zero(self) -> bool:
        """Semi-automatic zero-setting (the zero key): accepted only when stable and in range."""
        if not self._stable or abs(self._zero + self._gross) > self._zero_limit:
            return False
        self._zero += self._gross
        self._ref -= self._gross
        self._gross = 0.0
        return True


class WeighbridgeBatch:
    """Many identical weighbridges stepped together; scale i behaves as a `WeighbridgeIndicator`.

    With one scale it reproduces `WeighbridgeIndicator` given the same generator state (noise is
    drawn in the same order), which the tests use to keep the two implementations in step.
    """

    def __init__(self, params: LoadCellParams, n: int, rng: np.random.Generator) -> None:
        if n < 1:
            raise ValueError(f"WeighbridgeBatch needs n >= 1 scales, got {n!r}")
        self.params = params
        self.n = n
        self.remote_offset_kg = np.zeros(n)
        self._rng = rng
        self._settled = np.zeros(n)
        self._creep = np.zeros(n)
        self._hyst = np.zeros(n)
        self._zero = np.zeros(n)
        self._ref = np.full(n, np.inf)
        self._still = np.zeros(n)
        self._noise = np.empty((0, n))
        self._noise_i = 0

    def step(
        self, true_load_kg: np.ndarray, dt_s: float, temperature_c: np.ndarray | float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Advance all scales by dt_s; return (indicated_kg, stable) arrays of length n."""
        p = self.params
        load = np.asarray(true_load_kg, dtype=float)
        temp = np.broadcast_to(np.asarray(temperature_c, dtype=float), (self.n,))
        if load.shape != (self.n,):
            raise ValueError(f"true_load_kg must have shape ({self.n},), got {load.shape}")
        if not (dt_s > 0.0 and math.isfinite(dt_s)):
            raise ValueError(f"step needs a positive finite dt_s, got {dt_s!r}")
        for name, values in (("true_load_kg", load), ("temperature_c", temp)):
            if not np.isfinite(values).all():
                bad = int(np.flatnonzero(~np.isfinite(values))[0])
                raise ValueError(f"{name} of scale {bad} is {values[bad]!r}, not finite")
        before = self._settled
        settled = before - math.expm1(-dt_s / p.settle_tau_s) * (load - before)
        self._settled = settled
        k_creep = math.expm1(-dt_s / p.creep_tau_s)
        self._creep -= k_creep * (p.creep_fraction * settled - self._creep)
        moved = settled - before
        target = np.where(moved > 0.0, -p.hysteresis_fraction, p.hysteresis_fraction) * settled
        width = p.hysteresis_width_fraction * p.max_kg
        self._hyst -= (target - self._hyst) * np.expm1(-np.abs(moved) / width)
        if self._noise_i == len(self._noise):
            self._noise = self._rng.standard_normal((_NOISE_BLOCK, self.n))
            self._noise_i = 0
        noise = self._noise[self._noise_i]
        self._noise_i += 1
        warm = temp - p.reference_temperature_c
        analog = (
            settled * (1.0 + p.span_error + p.span_tc_per_c * warm)
            + self._creep
            + self._hyst
            + p.zero_tc_kg_per_c * warm
            + p.noise_sigma_kg * noise
        )
        gross = analog - self._zero
        moving = np.abs(gross - self._ref) > p.stable_band_e * p.e_kg
        self._ref = np.where(moving, gross, self._ref)
        self._still = np.where(moving, 0.0, self._still + dt_s)
        stable = self._still >= p.stable_window_s * (1.0 - 1e-9)
        if p.zero_tracking:
            step_limit = R76_CLASS_III.zero_tracking_rate_e_per_s * p.e_kg * dt_s
            wanted = gross * min(1.0, dt_s / p.zero_tracking_tau_s)
            correction = np.clip(wanted, -step_limit, step_limit)
            track = (
                stable
                & (np.abs(gross) < 0.5 * p.e_kg)
                & (np.abs(self._zero + correction) <= R76_CLASS_III.zero_range_fraction * p.max_kg)
            )
            correction = np.where(track, correction, 0.0)
            self._zero += correction
            gross = gross - correction
        shown = gross + self.remote_offset_kg
        return np.floor(shown / p.e_kg + 0.5) * p.e_kg, stable
