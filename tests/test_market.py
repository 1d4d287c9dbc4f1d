"""The twin's market: jump-diffusion statistics, determinism, CSV replay errors, crashes and silences."""

from __future__ import annotations

import math

import numpy as np
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from cangtwin.platform.clock import SimPyClock
from cangtwin.platform.config_file import InputError
from cangtwin.twin.market import (
    REFERENCE_PRICES_CNY_PER_T,
    SECONDS_PER_YEAR,
    CsvReplay,
    JumpDiffusion,
    JumpDiffusionModel,
    PriceFeed,
    PriceShock,
    jump_diffusion_increments,
    reference_feed,
)
from cangtwin.twin.rng import RandomStreams

DAY = 86400.0


def _paths(params: JumpDiffusion, seeds: range, steps: int) -> tuple[np.ndarray, int]:
    """Per-step log-returns of many seeded model paths, and the jumps they contained."""
    returns, jumps = [], 0
    for seed in seeds:
        model = JumpDiffusionModel("copper-cathode", np.random.default_rng(seed), params)
        prices = np.array([model.next_tick().price_cny_per_t for _ in range(steps + 1)])
        returns.append(np.diff(np.log(prices)))
        jumps += model.jumps
    return np.concatenate(returns), jumps


def test_diffusion_mean_and_volatility_match_gbm():
    params = JumpDiffusion(drift=0.5, volatility=0.6, jump_intensity=0.0, step_s=DAY)
    r, jumps = _paths(params, range(200), 1000)
    dt = DAY / SECONDS_PER_YEAR
    n = len(r)
    sd = 0.6 * math.sqrt(dt)
    # Mean log-return is (μ − σ²/2)Δt; the σ²/2 term alone is 7 standard errors here.
    assert abs(r.mean() - (0.5 - 0.18) * dt) < 4 * sd / math.sqrt(n)
    assert abs(r.std(ddof=1) - sd) < 4 * sd / math.sqrt(2 * n)
    assert jumps == 0


def test_jumps_arrive_at_the_configured_intensity_and_move_the_moments():
    lam, m, s, sigma = 20.0, -0.1, 0.1, 0.3
    params = JumpDiffusion(drift=0.0, volatility=sigma, jump_intensity=lam, jump_mean=m, jump_std=s, step_s=DAY)
    steps, seeds = 1000, range(100)
    r, jumps = _paths(params, seeds, steps)
    dt = DAY / SECONDS_PER_YEAR
    expected_jumps = lam * dt * steps * len(seeds)
    assert abs(jumps - expected_jumps) < 4 * math.sqrt(expected_jumps)
    # Compensated drift: E[log-return] = (μ − σ²/2 − λk + λm)Δt with k = e^{m+s²/2} − 1.
    k = math.exp(m + s * s / 2) - 1
    variance = (sigma**2 + lam * (m * m + s * s)) * dt
    n = len(r)
    assert abs(r.mean() - (-sigma**2 / 2 - lam * k + lam * m) * dt) < 4 * math.sqrt(variance / n)
    assert abs(r.var(ddof=1) / variance - 1) < 0.05


def test_compensated_drift_keeps_the_expected_price_growing_at_mu():
    # E[S_T] = S_0·e^{μT} whatever the jumps; without the λk compensator this is off by ~e^{1.8}.
    params = JumpDiffusion(drift=0.1, volatility=0.2, jump_intensity=20.0, jump_mean=-0.1, jump_std=0.1, step_s=DAY)
    rng = np.random.default_rng(7)
    steps, paths = 365, 4000
    increments, _ = jump_diffusion_increments(rng, steps * paths, params)
    terminal = np.exp(increments.reshape(paths, steps).sum(axis=1))
    se = terminal.std(ddof=1) / math.sqrt(paths)
    assert abs(terminal.mean() - math.exp(0.1 * steps * DAY / SECONDS_PER_YEAR)) < 4 * se


def test_a_seed_gives_one_path_however_it_is_consumed():
    def feed(seed: int) -> PriceFeed:
        return reference_feed(RandomStreams(seed), JumpDiffusion(step_s=30.0))

    whole = list(feed(3).ticks(3600 * 12))
    chunked_feed = feed(3)
    chunked = [t for until in (100.0, 4000.0, 3600 * 12) for t in chunked_feed.ticks(until)]
    assert whole == chunked
    assert whole != list(feed(4).ticks(3600 * 12))


def test_paths_start_at_the_reference_prices_and_tick_every_step():
    ticks = list(reference_feed(RandomStreams(1), start_at=1000.0).ticks(1000.0 + 120))
    first = {t.commodity: t.price_cny_per_t for t in ticks if t.seq == 0}
    assert first == REFERENCE_PRICES_CNY_PER_T
    assert REFERENCE_PRICES_CNY_PER_T["steel-coil"] == 3800.0
    steel = [t for t in ticks if t.commodity == "steel-coil"]
    assert [t.at for t in steel] == [1000.0, 1060.0, 1120.0]
    assert [t.seq for t in steel] == [0, 1, 2]


def test_each_commodity_draws_from_its_own_stream():
    both = reference_feed(RandomStreams(5), prices={"steel-coil": 3800.0, "rubber-bale": 14500.0})
    alone = reference_feed(RandomStreams(5), prices={"steel-coil": 3800.0})
    steel_both = [t for t in both.ticks(6000) if t.commodity == "steel-coil"]
    assert steel_both == list(alone.ticks(6000))


def test_bad_starting_price_is_refused():
    with pytest.raises(ValueError, match="positive"):
        JumpDiffusionModel("steel-coil", np.random.default_rng(0), s0=0.0)


# --- CSV replay -----------------------------------------------------------------------------


def _csv(tmp_path, text: str):
    path = tmp_path / "prices.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_replay_merges_commodities_in_time_order(tmp_path):
    path = _csv(
        tmp_path,
        "time,commodity,price,unit\n"
        "2024-03-01T09:00:00+08:00,copper-cathode,70110,CNY/t\n"
        "1709254800,steel-coil,3790.5,CNY/t\n"  # 2024-03-01T09:00:00+08:00 as Unix seconds
        "2024-03-01T01:01:00Z,copper-cathode,70200,CNY/t\n",
    )
    replay = CsvReplay(path)
    ticks = list(PriceFeed([replay]).ticks(math.inf))
    assert [(t.commodity, t.price_cny_per_t, t.at) for t in ticks] == [
        ("copper-cathode", 70110.0, 1709254800.0),
        ("steel-coil", 3790.5, 1709254800.0),
        ("copper-cathode", 70200.0, 1709254860.0),
    ]
    assert [t.seq for t in ticks] == [0, 1, 2]
    assert {t.source for t in ticks} == {"csv:prices.csv"}


def test_csv_replay_rebases_history_into_simulation_time(tmp_path):
    path = _csv(tmp_path, "time,commodity,price\n1709254860,rubber-bale,14400\n1709254800,steel-coil,3800\n")
    ticks = list(PriceFeed([CsvReplay(path, rebase_to=0.0, source="shfe")]).ticks(math.inf))
    assert [(t.commodity, t.at, t.source) for t in ticks] == [
        ("steel-coil", 0.0, "shfe"),
        ("rubber-bale", 60.0, "shfe"),
    ]


@pytest.mark.parametrize(
    ("body", "line", "column", "message"),
    [
        ("2024-03-01T09:00:00,steel-coil,3800\n", 2, "time", "UTC offset"),
        ("yesterday,steel-coil,3800\n", 2, "time", "not ISO 8601 or Unix seconds"),
        ("1,steel-coil,3800\nnan,steel-coil,3800\n", 3, "time", "finite"),
        ("1,steel-coil,-3800\n", 2, "price", "positive"),
        ("1,steel-coil,3.8k\n", 2, "price", "not a number"),
        ("1,steel-coil,inf\n", 2, "price", "positive"),
        ("1, ,3800\n", 2, "commodity", "empty"),
        ("5,steel-coil,3800\n6,copper-cathode,76000\n5,steel-coil,3801\n", 4, "time", "not after line 2"),
        ("5,steel-coil,3800\n5,steel-coil,3801\n", 3, "time", "not after line 2"),
        ("1,steel-coil\n", 2, None, "expected 3 fields"),
        ("1,steel-coil,3800,extra\n", 2, None, "expected 3 fields"),
    ],
)
def test_bad_csv_rows_name_file_line_and_column(tmp_path, body, line, column, message):
    path = _csv(tmp_path, "time,commodity,price\n" + body)
    with pytest.raises(InputError) as caught:
        CsvReplay(path)
    error = caught.value
    assert (error.source, error.line, error.field) == (str(path), line, column)
    assert message in error.message
    assert str(error).startswith(f"{path}:{line}: ")


def test_csv_file_level_errors(tmp_path):
    with pytest.raises(InputError, match="missing column.*price"):
        CsvReplay(_csv(tmp_path, "time,commodity,value\n1,steel-coil,3800\n"))
    with pytest.raises(InputError, match="no price rows"):
        CsvReplay(_csv(tmp_path, "time,commodity,price\n"))
    with pytest.raises(InputError, match="missing column"):
        CsvReplay(_csv(tmp_path, ""))
    with pytest.raises(InputError, match="cannot read"):
        CsvReplay(tmp_path / "absent.csv")
    (tmp_path / "latin1.csv").write_bytes(b"time,commodity,price\n1,\xe9,3800\n")
    with pytest.raises(InputError, match="not a readable CSV"):
        CsvReplay(tmp_path / "latin1.csv")


# --- shocks and silences ----------------------------------------------------------------------


def _steel(seed: int = 11) -> PriceFeed:
    return reference_feed(RandomStreams(seed), prices={"steel-coil": 3800.0, "copper-cathode": 76000.0})


@settings(max_examples=30, deadline=None)
@given(at=st.floats(0, 3000), size=st.floats(-0.95, 2.0))
def test_a_crash_scales_the_path_from_its_time_on(at, size):
    plain = list(_steel().ticks(3600))
    shocked_feed = _steel()
    shocked_feed.crash("steel-coil", at, size)
    shocked = list(shocked_feed.ticks(3600))
    assert [(t.commodity, t.at, t.seq) for t in shocked] == [(t.commodity, t.at, t.seq) for t in plain]
    for before, after in zip(plain, shocked):
        hit = before.commodity == "steel-coil" and before.at >= at
        assert after.price_cny_per_t == pytest.approx(before.price_cny_per_t * ((1 + size) if hit else 1), rel=1e-12)


def test_a_crash_cannot_reach_zero():
    with pytest.raises(ValueError, match="zero"):
        PriceShock("steel-coil", 10.0, -1.0)


def test_a_silence_drops_ticks_but_the_market_moves_on():
    plain = list(_steel().ticks(3600))
    feed = _steel()
    feed.silence(600.0, 1800.0, commodity="steel-coil")
    silenced = list(feed.ticks(3600))
    dropped = [t for t in plain if t.commodity == "steel-coil" and 600 <= t.at < 1800]
    assert len(dropped) == 20
    assert silenced == [t for t in plain if t not in dropped]  # resumes on the unsilenced path
    assert feed.suppressed == 20
    assert feed.delivered == len(silenced)


def test_a_feed_silenced_for_good_stays_silent():
    feed = _steel()
    feed.silence(120.0)
    assert max(t.at for t in feed.ticks(7200)) == 60.0


def test_run_delivers_on_the_clock_with_latency_and_sees_late_faults():
    env = simpy.Environment()
    feed = _steel()
    reference = list(_steel().ticks(1200))
    got: list[tuple[float, object]] = []
    feed.run(SimPyClock(env), lambda tick: got.append((env.now, tick)), latency_s=0.5)
    env.run(until=300)
    feed.crash("copper-cathode", 600.0, -0.5)  # injected while running, before its time
    feed.silence(900.0, commodity="steel-coil")
    env.run(until=1200.6)
    assert all(now == pytest.approx(tick.at + 0.5) for now, tick in got)
    ticks = [tick for _, tick in got]
    assert [(t.commodity, t.at) for t in ticks] == [
        (t.commodity, t.at) for t in reference if not (t.commodity == "steel-coil" and t.at >= 900)
    ]
    copper = {t.at: t.price_cny_per_t for t in ticks if t.commodity == "copper-cathode"}
    for t in reference:
        if t.commodity == "copper-cathode":
            assert copper[t.at] == pytest.approx(t.price_cny_per_t * (0.5 if t.at >= 600 else 1.0))
