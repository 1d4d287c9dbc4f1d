"""The commodity market, as part of the world: price paths, replayed history, crashes and silences.

Models produce `PriceTick`s in source time: `JumpDiffusionModel` (geometric Brownian motion with
Merton jumps) and `CsvReplay` (recorded prices). A `PriceFeed` merges them in time order, applies
scheduled shocks (a price crash) and silences (the feed stops, for stale-price scenarios), and
delivers the ticks on a `Clock`. A silence drops ticks on the wire; the market itself moves on,
so when the feed resumes the price is where the market went meanwhile.
"""

from __future__ import annotations

import csv
import heapq
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import pydantic

from cangtwin.platform.clock import Clock
from cangtwin.platform.config_file import InputError, StrictModel
from cangtwin.platform.value.feed import PriceTick
from cangtwin.twin.rng import RandomStreams

# Spot reference prices, CNY per tonne (the site file's value_cny_per_t agrees).
REFERENCE_PRICES_CNY_PER_T: dict[str, float] = {
    "steel-coil": 3800.0,
    "aluminium-ingot": 20500.0,
    "copper-cathode": 76000.0,
    "rubber-bale": 14500.0,
}
SECONDS_PER_YEAR = 365.25 * 86400


class JumpDiffusion(StrictModel):
    """Merton jump-diffusion parameters, annualised; jump sizes are in log price."""

    drift: float = pydantic.Field(default=0.0, ge=-5, le=5)  # expected return per year, jumps included
    volatility: float = pydantic.Field(default=0.25, ge=0, le=5)
    jump_intensity: float = pydantic.Field(default=2.0, ge=0, le=10000)  # jumps per year
    jump_mean: float = pydantic.Field(default=-0.03, ge=-5, le=5)
    jump_std: float = pydantic.Field(default=0.05, ge=0, le=5)
    step_s: float = pydantic.Field(default=60.0, gt=0, le=86400 * 31)


def jump_diffusion_increments(
    rng: np.random.Generator, n: int, params: JumpDiffusion
) -> tuple[np.ndarray, np.ndarray]:
    """`n` log-price increments of one step each, and the number of jumps in each step.

    Exact for the model: log S moves by (μ − σ²/2 − λk)Δt + σ√Δt·Z + Σ_{i≤N} Y_i with
    N ~ Poisson(λΔt), Y_i ~ N(m, s²) and k = E[e^Y] − 1, so E[S_t] = S_0·e^{μt}. The sum of N
    normal jumps is drawn as one normal N(Nm, Ns²).
    """
    dt = params.step_s / SECONDS_PER_YEAR
    sigma, lam, m, s = params.volatility, params.jump_intensity, params.jump_mean, params.jump_std
    k = math.exp(m + 0.5 * s * s) - 1.0
    z = rng.standard_normal(n)
    jumps = rng.poisson(lam * dt, n)
    zj = rng.standard_normal(n)
    increments = (params.drift - 0.5 * sigma * sigma - lam * k) * dt + sigma * math.sqrt(dt) * z
    increments += jumps * m + np.sqrt(jumps) * s * zj
    return increments, jumps


class PriceModel(Protocol):
    """A source of ticks in non-decreasing source time; None once it has nothing more."""

    def next_tick(self) -> PriceTick | None: ...


class JumpDiffusionModel:
    """One commodity's price path, a tick every `step_s` from `start_at` (the first tick is `s0`).

    Draws come in blocks from `rng`, so a seed gives the same path however the ticks are consumed.
    """

    def __init__(
        self,
        commodity: str,
        rng: np.random.Generator,
        params: JumpDiffusion = JumpDiffusion(),
        *,
        s0: float | None = None,
        start_at: float = 0.0,
        source: str = "twin-market",
        block: int = 1024,
    ) -> None:
        s0 = REFERENCE_PRICES_CNY_PER_T[commodity] if s0 is None else s0
        if not (s0 > 0 and math.isfinite(s0)):
            raise ValueError(f"starting price for {commodity} must be positive, got {s0}")
        self.commodity = commodity
        self.params = params
        self.source = source
        self.jumps = 0  # jumps in the steps handed out so far
        self._rng = rng
        self._block = block
        self._s0 = s0
        self._log_return = 0.0  # since start_at
        self._start_at = start_at
        self._seq = 0
        self._increments = np.empty(0)
        self._jump_counts = np.empty(0, dtype=np.int64)
        self._i = 0

    def next_tick(self) -> PriceTick:
        if self._seq > 0:
            if self._i == len(self._increments):
                self._increments, self._jump_counts = jump_diffusion_increments(self._rng, self._block, self.params)
                self._i = 0
            self._log_return += float(self._increments[self._i])
            self.jumps += int(self._jump_counts[self._i])
            self._i += 1
        tick = PriceTick(
            commodity=self.commodity,
            price_cny_per_t=self._s0 * math.exp(self._log_return),
            at=self._start_at + self._seq * self.params.step_s,
            source=self.source,
            seq=self._seq,
        )
        self._seq += 1
        return tick


def _parse_time(text: str) -> float:
    """Unix seconds, or ISO 8601 with a UTC offset (a bare local time is ambiguous)."""
    try:
        value = float(text)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"not ISO 8601 or Unix seconds: {text!r}") from None
        if parsed.tzinfo is None:
            raise ValueError(f"ISO 8601 time needs a UTC offset (e.g. +08:00): {text!r}") from None
        return parsed.timestamp()
    if not math.isfinite(value):
        raise ValueError(f"not a finite time: {text!r}")
    return value


Row = tuple[float, str, float, int]  # time, commodity, price, line


class CsvReplay:
    """Recorded prices from a CSV with columns time, commodity, price (CNY/t); other columns are ignored.

    The whole file is checked on load: any bad row is an `InputError` naming the file, the line
    and the column. Times must strictly increase per commodity. `rebase_to` shifts all times so
    the first row lands there (to replay history inside a simulation that starts at 0).
    """

    COLUMNS = ("time", "commodity", "price")

    def __init__(self, path: str | Path, *, source: str | None = None, rebase_to: float | None = None) -> None:
        self.path = Path(path)
        self.source = source or f"csv:{self.path.name}"
        rows = self._load()
        shift = 0.0 if rebase_to is None else rebase_to - min(at for at, _, _, _ in rows)
        rows.sort(key=lambda row: (row[0], row[3]))
        self._ticks = [
            PriceTick(commodity=c, price_cny_per_t=p, at=at + shift, source=self.source, seq=i)
            for i, (at, c, p, _) in enumerate(rows)
        ]
        self._next = 0

    def _load(self) -> list[Row]:
        where = str(self.path)
        try:
            handle = self.path.open(newline="", encoding="utf-8-sig")  # Excel writes a BOM
        except OSError as exc:
            raise InputError(where, None, None, f"cannot read: {exc.strerror or exc}") from None
        rows: list[Row] = []
        last_at: dict[str, tuple[float, int]] = {}
        with handle:
            reader = csv.DictReader(handle)
            try:
                header = reader.fieldnames or []
                missing = [c for c in self.COLUMNS if c not in header]
                if missing:
                    need = ", ".join(self.COLUMNS)
                    raise InputError(where, 1, None, f"missing column(s) {', '.join(missing)}; need {need}")
                for record in reader:
                    line = reader.line_num
                    if None in record or any(record[c] is None for c in self.COLUMNS):
                        raise InputError(where, line, None, f"expected {len(header)} fields")
                    rows.append(self._row(record, where, line, last_at))
            except (csv.Error, UnicodeDecodeError) as exc:
                raise InputError(where, reader.line_num or None, None, f"not a readable CSV: {exc}") from None
        if not rows:
            raise InputError(where, None, None, "no price rows")
        return rows

    @staticmethod
    def _row(record: dict, where: str, line: int, last_at: dict[str, tuple[float, int]]) -> Row:
        try:
            at = _parse_time(record["time"].strip())
        except ValueError as exc:
            raise InputError(where, line, "time", str(exc)) from None
        commodity = record["commodity"].strip()
        if not commodity:
            raise InputError(where, line, "commodity", "empty")
        text = record["price"].strip()
        try:
            price = float(text)
        except ValueError:
            raise InputError(where, line, "price", f"not a number: {text!r}") from None
        if not (price > 0 and math.isfinite(price)):
            raise InputError(where, line, "price", f"must be a positive finite CNY/t, got {text!r}")
        previous = last_at.get(commodity)
        if previous is not None and at <= previous[0]:
            raise InputError(where, line, "time", f"not after line {previous[1]}'s time for {commodity}")
        last_at[commodity] = (at, line)
        return at, commodity, price, line

    def next_tick(self) -> PriceTick | None:
        if self._next == len(self._ticks):
            return None
        self._next += 1
        return self._ticks[self._next - 1]


@dataclass(frozen=True)
class PriceShock:
    """From `at` on, `commodity` trades at (1 + size) times its path: −0.3 is a 30 % crash. With
    `over_s` > 0 the move is a slide, reached evenly in log price over `over_s` from `at`."""

    commodity: str
    at: float
    size: float
    over_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.size > -1:
            raise ValueError(f"a shock cannot take the price to zero or below: size {self.size}")
        if not self.over_s >= 0:
            raise ValueError(f"a slide cannot take negative time: over_s {self.over_s}")

    def factor(self, t: float) -> float:
        if t < self.at:
            return 1.0
        if self.over_s == 0 or t >= self.at + self.over_s:
            return 1.0 + self.size
        return (1.0 + self.size) ** ((t - self.at) / self.over_s)


@dataclass(frozen=True)
class Silence:
    """No ticks for `commodity` (every commodity if None) with source time in [start, end)."""

    start: float
    end: float = math.inf
    commodity: str | None = None

    def covers(self, tick: PriceTick) -> bool:
        return self.start <= tick.at < self.end and self.commodity in (None, tick.commodity)


class PriceFeed:
    """The models' ticks merged in time order, shocked and silenced, as the platform would receive them.

    Shocks and silences may be added while the feed runs; they apply to ticks not yet delivered.
    """

    def __init__(self, models: Iterable[PriceModel]) -> None:
        self._models = list(models)
        self._heap: list[tuple[float, int, PriceTick]] = []
        for i in range(len(self._models)):
            self._refill(i)
        self.shocks: list[PriceShock] = []
        self.silences: list[Silence] = []
        self.delivered = 0
        self.suppressed = 0
        # Who watches the market itself (ground truth), silenced or not: called with every tick.
        self.observers: list[Callable[[PriceTick], None]] = []

    def _refill(self, i: int) -> None:
        tick = self._models[i].next_tick()
        if tick is not None:
            heapq.heappush(self._heap, (tick.at, i, tick))

    def crash(self, commodity: str, at: float, size: float) -> PriceShock:
        shock = PriceShock(commodity, at, size)
        self.shocks.append(shock)
        return shock

    def slide(self, commodity: str, at: float, size: float, over_s: float) -> PriceShock:
        shock = PriceShock(commodity, at, size, over_s)
        self.shocks.append(shock)
        return shock

    def silence(self, start: float, end: float = math.inf, commodity: str | None = None) -> Silence:
        silence = Silence(start, end, commodity)
        self.silences.append(silence)
        return silence

    def _pop(self) -> PriceTick:
        _, i, tick = heapq.heappop(self._heap)
        self._refill(i)
        return tick

    def _shape(self, tick: PriceTick) -> PriceTick | None:
        factor = math.prod(s.factor(tick.at) for s in self.shocks if s.commodity == tick.commodity and s.at <= tick.at)
        if factor != 1.0:
            tick = PriceTick(tick.commodity, tick.price_cny_per_t * factor, tick.at, tick.source, tick.seq)
        for observe in self.observers:
            observe(tick)
        if any(s.covers(tick) for s in self.silences):
            self.suppressed += 1
            return None
        self.delivered += 1
        return tick

    def ticks(self, until: float) -> Iterator[PriceTick]:
        """The ticks with source time up to `until`, in time order (ties by model order)."""
        while self._heap and self._heap[0][0] <= until:
            tick = self._shape(self._pop())
            if tick is not None:
                yield tick

    def run(self, clock: Clock, deliver: Callable[[PriceTick], None], latency_s: float = 0.0) -> None:
        """Deliver each tick at its source time + `latency_s` on `clock`, until the models run out."""

        def next_one() -> None:
            if not self._heap:
                return
            raw = self._pop()

            def arrive() -> None:
                tick = self._shape(raw)
                if tick is not None:
                    deliver(tick)
                next_one()

            clock.call_later(raw.at + latency_s - clock.now(), arrive)

        next_one()


def reference_feed(
    streams: RandomStreams,
    params: JumpDiffusion = JumpDiffusion(),
    prices: Mapping[str, float] = REFERENCE_PRICES_CNY_PER_T,
    start_at: float = 0.0,
) -> PriceFeed:
    """One jump-diffusion path per commodity from its reference price, each on its own named stream."""
    return PriceFeed(
        JumpDiffusionModel(c, streams.get(f"market:{c}"), params, s0=p, start_at=start_at) for c, p in prices.items()
    )
