"""Sweeps: grid and random expansion, located errors for bad sweep files, a local sweep end to end
(rule-threshold trade-off, run folders, sweep.json, sweep.html), and a crashing replication
reported with its seed while the rest finish. The Ray run is in test_sweep_ray.py."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from cangtwin.platform.config_file import InputError
from cangtwin.platform.rules.ruleset import default_ruleset_path
from cangtwin.scenarios.spec import load_scenario
from cangtwin.scenarios.suite import is_scenario_file
from cangtwin.scenarios.sweep import run_sweep
from cangtwin.scenarios.sweep_cli import sweep_command
from cangtwin.scenarios.sweep_report import figures
from cangtwin.scenarios.sweep_spec import SweepFile, expand, load_sweep, write_inputs
from cangtwin.twin.site import reference_site_path

# Ten minutes of the small site, LiDAR off: a two-lot theft at 3 min, after an honest outbound
# of an unpledged lot at 1 min.
BASE = """\
scenario: sweep-base
site: small
seed: 11
start: "2026-03-02T09:00"
duration: 10m
twin: {lidar_scans: false}
loans:
  - {id: LN-A-001, bank: bank-a, borrower: 华东金属贸易有限公司, amount_cny: 700000, bays: [B01, B02]}
operations:
  - {kind: outbound, at: 1m, lots: [B07-01]}
injections:
  - {kind: unauthorized-outbound, id: theft-1, at: 3m, lots: [B01-03, B02-01]}
expectations:
  - {kind: detect, label: theft-1, rule: outbound-unauthorized, view: bank, success_s: 2, acceptable_s: 60}
"""


def _files(tmp: Path, sweep: str) -> Path:
    (tmp / "base.yaml").write_text(BASE, encoding="utf-8")
    path = tmp / "sweep.yaml"
    path.write_text(sweep, encoding="utf-8")
    return path


def _sweep(parameters: str, extra: str = "") -> str:
    return f"sweep: t\nbase_scenario: base.yaml\nreplications: 1\n{extra}parameters:\n{parameters}"


# --- expansion ------------------------------------------------------------------------------

values = st.lists(st.one_of(st.integers(-5, 5), st.booleans(), st.text("ab", max_size=2)), min_size=1, max_size=4,
                  unique_by=repr)


@given(st.lists(values, min_size=1, max_size=3))
def test_a_grid_is_the_full_product_in_order(columns):
    spec = SweepFile.model_validate({"sweep": "g", "base_scenario": "x.yaml", "parameters": [
        {"field": f"f{i}", "values": col} for i, col in enumerate(columns)]})
    points = expand(spec)
    assert len(points) == math.prod(len(c) for c in columns)
    assert [tuple(p.values()) for p in points] == list(itertools.product(*columns))  # the last varies fastest
    assert all(list(p) == [f"f{i}" for i in range(len(columns))] for p in points)


@settings(max_examples=50)
@given(seed=st.integers(0, 2**32), samples=st.integers(1, 30), low=st.floats(-1e3, 1e3), width=st.floats(0, 1e3),
       choices=values)
def test_a_random_search_is_seeded_and_stays_in_its_ranges(seed, samples, low, width, choices):
    high = low + width
    spec = SweepFile.model_validate({"sweep": "r", "base_scenario": "x.yaml", "search": "random", "samples": samples,
                                     "seed": seed, "parameters": [
                                         {"field": "a", "range": [low, high]},
                                         {"field": "b", "range": [math.floor(low), math.floor(high)], "integer": True},
                                         {"field": "c", "values": choices},
                                         {"field": "d", "range": [1, 1 + width], "log": True, "integer": True}]})
    points = expand(spec)
    assert points == expand(spec) and len(points) == samples
    for p in points:
        assert low - 1e-9 * max(1, abs(low)) <= p["a"] <= high + 1e-9 * max(1, abs(high))
        assert isinstance(p["b"], int) and math.floor(low) <= p["b"] <= math.floor(high)
        assert p["c"] in choices
        assert isinstance(p["d"], int) and 1 <= p["d"] <= 1 + width
    if samples > 5 and width > 1:
        assert expand(spec.model_copy(update={"seed": seed + 1})) != points


# --- bad sweep files: one line naming the file, the line and the field -------------------------

@pytest.mark.parametrize("parameters, line, words", [
    ("  - field: twin.lidar_scan\n    values: [true, false]\n", 5, "twin.lidar_scan: no such field"),
    ("  - field: rules.no-such-rule.params.k\n    values: [1, 2]\n", 5, "has no rule 'no-such-rule'"),
    ("  - field: rules.outbound-unauthorized.params.min_lot\n    values: [1]\n", 5,
     "rules.outbound-unauthorized.params.min_lot: no such field"),
    ("  - field: injections.theft-9.at\n    values: [60]\n", 5, "no item with id 'theft-9' (ids: theft-1)"),
    ("  - field: twin.lidar_scans\n    values: [true, \"yes\"]\n", 6, "twin.lidar_scans = 'yes'"),
    ("  - field: rules.outbound-unauthorized.params.min_lots\n    values: [1, 0]\n", 6, "greater than or equal to 1"),
    ("  - field: injections.theft-1.at\n    values: [1h]\n", 6, "beyond the duration"),
    ("  - field: duration\n    range: [60, 600]\n", 6, "a grid needs values"),
])
def test_a_bad_sweep_file_is_one_located_error(tmp_path, parameters, line, words):
    path = _files(tmp_path, _sweep(parameters))
    with pytest.raises(InputError) as caught:
        load_sweep(path)
    err = caught.value
    assert err.source == str(path) and err.line == line, str(err)
    assert words in str(err) and "\n" not in str(err)


def test_the_command_prints_the_error_on_one_line_and_runs_nothing(tmp_path):
    path = _files(tmp_path, _sweep("  - field: twin.lidar_scan\n    values: [true]\n"))
    result = CliRunner().invoke(sweep_command, [str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: {path}:5: parameters[0].field: twin.lidar_scan: no such field "
                                     "(twin.lidar_scan is not in the scenario file's schema)")
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


# --- a local sweep end to end ---------------------------------------------------------------

@pytest.fixture(scope="module")
def threshold_sweep(tmp_path_factory):
    """outbound-unauthorized's min_lots at 1 and 3: the two-lot theft is caught, then missed."""
    tmp = tmp_path_factory.mktemp("sweep")
    path = _files(tmp, _sweep("  - field: rules.outbound-unauthorized.params.min_lots\n    values: [1, 3]\n"))
    seen = []
    document = run_sweep(path, tmp / "out", workers=2, progress=lambda n, total, what: seen.append((n, total)))
    return tmp / "out", document, seen


def test_each_point_runs_in_its_own_folder_from_its_own_files(threshold_sweep):
    out, document, seen = threshold_sweep
    assert seen[-1] == (2, 2)
    assert json.loads((out / "sweep.json").read_text()) == document
    assert document["format"] == "cangtwin.sweep/1" and document["errors"] == 0
    for point, min_lots in zip(document["points"], (1, 3)):
        assert point["params"] == {"rules.outbound-unauthorized.params.min_lots": min_lots}
        scenario = load_scenario(out / point["scenario_file"])
        rule = next(e for e in scenario.ruleset.entries if e.id == "outbound-unauthorized")
        assert rule.params.min_lots == min_lots and scenario.ruleset.label == point["ruleset"]
        (rep,) = point["replications"]
        assert rep["seed"] == 11 and rep["executor"]["kind"] == "local"
        result = json.loads((out / rep["folder"] / "result.json").read_text())
        assert result["provenance"]["ruleset"] == point["ruleset"] and (out / rep["folder"] / "events.jsonl").is_file()


def test_the_threshold_trades_recall_for_money_at_risk(threshold_sweep):
    _, document, _ = threshold_sweep
    caught, missed = document["points"]
    assert caught["rules"]["outbound-unauthorized"]["recall"] == 1.0
    assert missed["rules"]["outbound-unauthorized"]["recall"] == 0.0
    assert caught["metrics"]["recall"]["mean"] == 1.0 and missed["metrics"]["recall"]["mean"] == 0.0
    assert caught["labels"]["theft-1"]["detected"] == 1 and missed["labels"]["theft-1"]["detected"] == 0
    assert caught["metrics"]["bank_latency_s"]["mean"] < 60 and missed["metrics"]["bank_latency_s"]["n"] == 0
    assert caught["metrics"]["money_at_risk_cny"]["mean"] == 0
    # Two pledged lots (a steel coil and aluminium ingots) left unseen: tens of thousands of CNY.
    assert missed["metrics"]["money_at_risk_cny"]["mean"] > 10_000
    assert missed["metrics"]["exposure_cny_h"]["mean"] > caught["metrics"]["exposure_cny_h"]["mean"] > 0


def test_the_report_draws_the_trade_off_curves_in_both_languages(threshold_sweep):
    out, document, _ = threshold_sweep
    charts = figures(document)
    assert {"curve-0-precision", "curve-0-recall", "curve-0-latency", "curve-0-money_at_risk_cny"} <= charts.keys()
    fig, labels = charts["curve-0-recall"]
    assert list(fig.data[0].x) == [1, 3] and list(fig.data[0].y) == [1.0, 0.0]
    assert "outbound-unauthorized" in labels["en"]["layout"]["title.text"]
    assert "召回率" in labels["zh"]["layout"]["title.text"]
    latency, labels = charts["curve-0-latency"]
    assert labels["en"]["names"] == ["edge · theft-1", "bank-visible · theft-1"]
    assert latency.data[1].y[0] < 60 and latency.data[1].y[1] is None  # the missed theft has no latency
    page = (out / "sweep.html").read_text(encoding="utf-8")
    assert "curve-0-recall" in page and "阈值权衡" in page and "Plotly.newPlot" in page


# --- a crashing replication -----------------------------------------------------------------

def test_a_crashing_replication_is_reported_with_its_seed_and_the_rest_finish(tmp_path):
    # B07-01 left at 1 min with an honest outbound: a theft of it cannot happen, and that run crashes.
    path = _files(tmp_path, _sweep("  - field: injections.theft-1.lots\n    values: [[B07-01], [B01-03]]\n"))
    result = CliRunner().invoke(sweep_command, [str(path), "--out", str(tmp_path / "out"), "--workers", "2"])
    assert result.exit_code == 3, result.output
    document = json.loads((tmp_path / "out" / "sweep.json").read_text())
    crashed, fine = document["points"]
    (rep,) = crashed["replications"]
    assert rep["status"] == "ERROR" and rep["seed"] == 11 and crashed["errors"] == 1
    assert rep["error"]["rerun"] == f"cangtwin run {tmp_path / 'out' / 'points' / 'p000' / 'scenario.yaml'} --seed 11"
    assert "Traceback" in (tmp_path / "out" / rep["error"]["traceback"]).read_text()
    assert fine["errors"] == 0 and fine["replications"][0]["status"] in ("SUCCESS", "ACCEPTABLE", "FAILURE")
    assert fine["metrics"]["recall"]["mean"] == 1.0
    assert "crashed" in result.output and "--seed 11" in result.output
    # the point's own files rerun it alone: the same seed, the same theft of a lot that is gone
    rerun = load_scenario(tmp_path / "out" / crashed["scenario_file"], rep["seed"])
    assert rerun.spec.injections[0].lots == ["B07-01"]


def test_a_two_parameter_grid_gets_heatmaps_and_one_line_per_other_value(threshold_sweep):
    _, document, _ = threshold_sweep
    field = "rules.outbound-unauthorized.params.min_lots"
    grid = {**document, "parameters": [document["parameters"][0], {"field": "twin.lidar_scans", "values": [False, True]}],
            "points": [{**p, "id": f"{p['id']}-{lidar}", "params": {field: p["params"][field], "twin.lidar_scans": lidar}}
                       for p in document["points"] for lidar in (False, True)]}
    charts = figures(grid)
    heat, labels = charts["heatmap-recall"]
    assert list(heat.data[0].x) == ["1", "3"] and list(heat.data[0].y) == ["False", "True"]
    assert [list(row) for row in heat.data[0].z] == [[1.0, 0.0], [1.0, 0.0]]
    assert labels["en"]["layout"]["yaxis.title.text"] == "twin.lidar_scans"
    recall, labels = charts["curve-0-recall"]
    assert len(recall.data) == 2 and labels["en"]["names"] == ["twin.lidar_scans=False", "twin.lidar_scans=True"]
    assert len(charts["curve-1-latency"][0].data) == 4  # edge and bank-visible, for each min_lots


def test_a_random_search_gets_scatter_plots(threshold_sweep):
    _, document, _ = threshold_sweep
    field = "rules.outbound-unauthorized.params.min_lots"
    search = {**document, "search": "random", "parameters": [{"field": field, "range": [1, 3], "integer": True}]}
    charts = figures(search)
    assert not any(name.startswith(("curve", "heatmap")) for name in charts)
    fig, labels = charts["scatter-0-recall"]
    assert list(fig.data[0].x) == [1, 3] and list(fig.data[0].y) == [1.0, 0.0]
    assert labels["zh"]["layout"]["title.text"] == f"召回率 随 {field}"


def test_a_point_folder_carries_the_site_and_rule_files_it_needs(tmp_path):
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "my-site.yaml").write_text(reference_site_path("small").read_text(encoding="utf-8"))
    (tmp_path / "files" / "my-rules.yaml").write_text(default_ruleset_path().read_text(encoding="utf-8"))
    path = _files(tmp_path, _sweep("  - field: twin.lidar_scans\n    values: [true, false]\n"))
    base = (tmp_path / "base.yaml").read_text().replace("site: small", "site: files/my-site.yaml")
    (tmp_path / "base.yaml").write_text(base + "rules: files/my-rules.yaml\n", encoding="utf-8")
    sweep = load_sweep(path)
    elsewhere = tmp_path / "elsewhere"
    for point, lidar in zip(sweep.points, (True, False)):
        assert sorted(point.inputs) == ["rules.yaml", "scenario.yaml", "site.yaml"]
        scenario = load_scenario(write_inputs(elsewhere / point.id, point.inputs))
        assert scenario.spec.twin.lidar_scans is lidar
        assert scenario.site.sha256 == sweep.base.site.sha256 and scenario.ruleset.sha256 == sweep.base.ruleset.sha256


def test_the_bank_example_is_a_valid_threshold_sweep_and_not_a_scenario_file():
    path = Path(__file__).parent.parent / "scenarios" / "library" / "sweeps" / "substitution-tolerance.yaml"
    sweep = load_sweep(path)
    (param,) = sweep.spec.parameters
    assert param.field.startswith("rules.") and len(param.values) >= 5 and sweep.spec.replications >= 5
    assert not sweep.base.spec.twin.lidar_scans
    assert not is_scenario_file(path)  # suites and the pytest plugin must not collect it


def test_a_missing_base_scenario_is_named_at_its_line(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(_sweep("  - field: duration\n    values: [60]\n").replace("base.yaml", "nope.yaml"))
    with pytest.raises(InputError, match=r"sweep.yaml:2: base_scenario: 'nope.yaml': file not found"):
        load_sweep(path)
