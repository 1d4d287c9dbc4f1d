"""The dashboard's server side without a browser: loading, replay frames, down-sampling,
access, evidence verification and bad input, on real recorded runs."""

from __future__ import annotations

import base64
import json
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cangtwin.dash_app import app as views
from cangtwin.dash_app import figures, kpis
from cangtwin.dash_app.access import OPERATOR, Access
from cangtwin.dash_app.evidence import verify
from cangtwin.dash_app.results import ResultsError, open_folder, read_events
from cangtwin.dash_app.sensors import downsample
from cangtwin.dash_app.store import load_run
from cangtwin.dash_app.sweep import sweep_figures
from dash_fixtures import build
from dash_fixtures.build import recorded_runs

build.start()  # the recordings run in other processes while the tests collected before these run


@pytest.fixture(scope="module")
def runs(tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    return recorded_runs()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module")
def medium(runs):
    return load_run(runs["medium"])


@pytest.fixture(scope="module")
def sensors(runs):
    return load_run(runs["sensors"])


def _alert(run, rule):
    return next(a for a in run.result["alerts"] if a["rule"] == rule)


def _explained_by(result: dict, label_of: dict) -> set[str]:
    """The alerts that a label explains: its detection and what it tripped on the way (a theft
    also trips the bay scan and geofence as the goods are carried out)."""
    label = next(lid for lid, det in result["detections"].items() if det["alert"] == label_of["id"])
    return {aid for aid, labels in result["explained_by"].items() if label in labels}


def _page_text(component) -> str:
    """Every text and class name in a component tree, as the page would hold them."""
    if isinstance(component, (list, tuple)):
        return " ".join(_page_text(c) for c in component)
    if not hasattr(component, "to_plotly_json"):
        return "" if component is None else str(component)
    return " ".join([getattr(component, "className", "") or "", _page_text(getattr(component, "children", None))])


def _bay_trace_names(figure, bay):
    """The legend names of the bay traces whose hover text names `bay`."""
    return {tr["name"] for tr in figure["data"] if tr.get("fill") == "toself"
            and any(t and t.startswith(f"{bay} ") for t in tr["text"])}


# --- down-sampling -----------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(0, 3000), st.just(3)), elements=st.floats(-50, 50)),
       st.integers(1, 500))
def test_downsample_is_a_bounded_subset_with_one_point_per_voxel(points, cap):
    thin = downsample(points, max_points=cap, voxel_m=0.5)
    assert len(thin) <= cap
    assert len(thin) <= len(points)
    rows = {tuple(p) for p in points}
    assert all(tuple(p) in rows for p in thin)
    voxels = {tuple(v) for v in np.floor(thin / 0.5).astype(np.int64)}
    assert len(voxels) == len(thin)  # never two points from one voxel
    if len(points) and cap >= len({tuple(v) for v in np.floor(points / 0.5).astype(np.int64)}):
        assert len(thin) == len({tuple(v) for v in np.floor(points / 0.5).astype(np.int64)})


def test_a_real_scan_is_thinned_on_the_server(sensors):
    t = sensors.replay.start + 300
    figure, caption, key = views.lidar_view(sensors, "lidar-1", None, 300, "en", None)
    total = len(sensors.sensors.scan_at("lidar-1", t)[1])
    shown = len(figure["data"][0]["x"])
    assert total > 100_000 and 1_000 < shown <= 20_000
    assert f"{shown:,} of {total:,}" in caption
    bay_fig, _, _ = views.lidar_view(sensors, "lidar-1", "B01", 300, "en", None)
    xs = np.asarray(bay_fig["data"][0]["x"])
    assert 0 < len(xs) < shown and xs.min() >= 29.0  # only the bay's points (B01 starts at x=30, 0.5 m margin)


# --- replay frames -----------------------------------------------------------------------------

def test_frame_shows_the_theft_at_its_bay_for_the_operator_and_the_bank(medium):
    theft = _alert(medium, "outbound-unauthorized")
    first = min(a["raised_at"] for a in medium.result["alerts"] if a["id"] in _explained_by(medium.result, theft))
    before = first - 5 - medium.replay.start
    after = theft["raised_at"] + 5 - medium.replay.start
    floor_before, *_ = views.replay_frame(medium, before, "en", OPERATOR)
    floor_after, label, note, timeline = views.replay_frame(medium, after, "en", OPERATOR)
    assert _bay_trace_names(floor_before, "W01") == {"pledged"}
    assert _bay_trace_names(floor_after, "W01") == {"alert raised"}
    assert label.startswith("2026-03-02")
    assert "interpolated" in note  # the run did not record inputs: positions are derived, and say so
    assert [tr["name"] for tr in timeline["data"]][:3] == ["messages / min", "injection", "alert"]
    as_b, *_ = views.replay_frame(medium, after, "en", "bank-b")
    assert _bay_trace_names(as_b, "W01") == {"another bank's"}  # bank B sees no detail of bank A's pledge
    assert _bay_trace_names(as_b, "E05") == {"pledged"}
    double = _alert(medium, "duplicate-pledge")  # its targets are registry filings; their goods are in E05, E06
    late = double["raised_at"] + 5 - medium.replay.start
    as_b_late, *_ = views.replay_frame(medium, late, "en", "bank-b")
    assert _bay_trace_names(as_b_late, "E05") == _bay_trace_names(as_b_late, "E06") == {"alert raised"}
    assert _bay_trace_names(views.replay_frame(medium, late, "en", "bank-a")[0], "E05") == {"another bank's"}


def test_frames_move_vehicles_and_mark_the_dead_sensor(medium):
    replay = medium.replay
    failed_at = next(lab["onset"] for lab in medium.result["labels"] if lab["kind"] == "device-failure")
    assert replay.device_health(failed_at - 1)["climate-07"] == "ok"
    assert replay.device_health(failed_at + 60)["climate-07"] == "failed"
    outage = next(w for w in replay.windows if w.kind == "outage")
    floor, *_ = views.replay_frame(medium, outage.start + 10 - replay.start, "en", OPERATOR)
    assert "outage (outage-1)" in floor["layout"]["title"]["text"]
    frames = [replay.vehicles_at(replay.start + s)[0] for s in range(0, int(replay.end - replay.start), 60)]
    assert any(len({f[fl] for f in frames}) > 1 for fl in frames[0])  # forklifts move during the run
    trucks = [len(replay.vehicles_at(replay.start + s)[1]) for s in range(0, int(replay.end - replay.start), 30)]
    assert max(trucks) >= 1 and trucks[0] == 0


def test_sensor_run_uses_recorded_positions_frames_and_scale_readings(sensors):
    assert sensors.replay.positions_recorded
    src, caption = views.camera_view(sensors, "cam-scale", 240, "en")
    png = base64.b64decode(src.split(",", 1)[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and "cam-scale" in caption
    first = sensors.sensors.frames["cam-scale"][0][0]
    assert figures.clock(first, sensors.timezone) in views.camera_view(sensors, "cam-scale", -10, "en")[1]
    assert views.camera_view(sensors, "no-such-camera", 240, "en") == (None, "This camera sent no frame in this run.")
    times, kg, stable = sensors.sensors.scale["scale-wb1"]
    assert len(times) > 50 and kg.max() > 15000 and stable.any()  # a loaded truck on the plate


def test_a_multi_warehouse_run_draws_each_warehouse_and_counts_across_all(runs):
    pair = load_run(runs["pair"])
    assert list(pair.warehouses) == ["w1", "w2"]
    theft, double = _alert(pair, "outbound-unauthorized"), _alert(pair, "duplicate-pledge")
    assert theft["site"] == "w2" and pair.replay.banks_of(theft) == {"bank-a"}
    assert pair.replay.banks_of(double) == {"bank-a", "bank-b"}
    after = theft["raised_at"] + 5 - pair.replay.start
    w1, *_ = views.replay_frame(pair, after, "en", OPERATOR, None, "w1")
    w2, *_ = views.replay_frame(pair, after, "en", OPERATOR, None, "w2")
    assert _bay_trace_names(w2, "w2.B01") == {"alert raised"} and _bay_trace_names(w1, "w1.B01") == {"not pledged"}
    assert _bay_trace_names(w2, "w2.B09") == {"pledged"}  # bank C's loan at w2 (from w2's own book sync)
    assert "· w2 ·" in w2["layout"]["title"]["text"] and "· w1 ·" in w1["layout"]["title"]["text"]
    labels = next(tr["text"] for tr in w2["data"] if tr.get("mode") == "text")
    assert "B01" in labels and not any("." in label for label in labels)  # drawn without the prefix
    assert not any(t and t.startswith("w1.") for tr in w2["data"] if tr.get("fill") == "toself" for t in tr["text"])
    forks = next(tr for tr in w2["data"] if tr.get("name") == "forklift")
    assert forks["text"] and all(x <= pair.warehouses["w2"].spec.building.width_m for x in forks["x"])
    kpi = " ".join(_page_text(views.kpi_view(pair, {"kind": "run", "runs": {}}, None, OPERATOR, "en")).split())
    assert "Alerts per warehouse" in kpi and kpi.count("warehouse-row") == 3
    per_site = {site: sum(a["site"] == site for a in pair.result["alerts"]) for site in ("w1", "w2", "cloud")}
    assert per_site["w2"] >= 1 and per_site["cloud"] == 1 and pair.result["false_alarms"] == []
    assert all(f"warehouse-row {site} {n} 0" in kpi for site, n in per_site.items())
    feed = _page_text(views.alert_feed(pair, "bank-b", "en"))
    assert double["id"] in feed and theft["id"] not in feed


# --- access, alerts, evidence ---------------------------------------------------------------------

def test_banks_see_only_their_own_alerts(medium):
    theft = _alert(medium, "outbound-unauthorized")
    double = _alert(medium, "duplicate-pledge")
    assert medium.replay.banks_of(theft) == {"bank-a"}
    assert medium.replay.banks_of(double) == {"bank-b", "bank-c"}
    ids = lambda viewer: {a["id"] for a in kpis.visible_alerts(medium.result, medium.replay, viewer)}  # noqa: E731
    assert ids("bank-a") == _explained_by(medium.result, theft) and theft["id"] in ids("bank-a")
    assert ids("bank-b") == {double["id"]}
    assert ids(OPERATOR) == {a["id"] for a in medium.result["alerts"]}
    view = kpis.view_of(medium.result, medium.replay, "bank-a")
    assert set(view["detections"]) == {"theft-a"}
    with pytest.raises(ResultsError, match="not visible"):
        views.alert_detail(medium, double["id"], "bank-a", "en")


def test_login_tokens_are_signed_by_the_server():
    from werkzeug.security import generate_password_hash

    from cangtwin.dash_app.access import User

    access = Access({"alice": User(bank="bank-a", password=generate_password_hash("pw")),
                     "ops": User(role="operator", password=generate_password_hash("root"))}, secret="s")
    assert access.viewer(access.login("alice", "pw")) == "bank-a"
    assert access.viewer(access.login("ops", "root")) == OPERATOR
    assert access.login("alice", "wrong") is None and access.login("mallory", "pw") is None
    assert access.viewer(None) is None  # with a users file nobody is anybody until logged in
    forged = Access(secret="other").login("operator", None)
    assert access.viewer(forged) is None


def test_alert_detail_names_rule_params_section_money_and_evidence(medium):
    theft = _alert(medium, "outbound-unauthorized")
    text = _page_text(views.alert_detail(medium, theft["id"], OPERATOR, "en"))
    assert "4.5 出入库监管" in text and "min_lots" in text and "¥" in text
    assert text.count("evidence-entry") >= 2


def test_verify_accepts_the_run_package_and_refuses_a_tampered_one(runs, medium, tmp_path):
    theft = _alert(medium, "outbound-unauthorized")
    report = verify(medium.path, medium.result, theft["id"])
    assert report.ok, [c for c in report.checks if not c.ok]
    copy = tmp_path / "run"
    shutil.copytree(runs["medium"], copy)
    package = copy / "evidence" / medium.result["evidence"][theft["id"]]
    doc = json.loads(package.read_text())
    entry = base64.b64decode(doc["entries"][0]["data"]).replace(b"critical", b"minor!!!")
    doc["entries"][0]["data"] = base64.b64encode(entry).decode()
    package.write_text(json.dumps(doc))
    tampered = verify(copy, medium.result, theft["id"])
    assert not tampered.ok and any(c.name.startswith("inclusion") and not c.ok for c in tampered.checks)


# --- bad input ------------------------------------------------------------------------------------

def test_bad_folders_get_one_line_messages(runs, tmp_path):
    with pytest.raises(ResultsError, match="not a results folder"):
        open_folder(tmp_path)
    with pytest.raises(ResultsError, match="no such folder"):
        open_folder(tmp_path / "nope")
    old = tmp_path / "old"
    shutil.copytree(runs["sensors"], old)
    doc = json.loads((old / "result.json").read_text())
    doc["format"] = "cangtwin.result/0"
    (old / "result.json").write_text(json.dumps(doc))
    with pytest.raises(ResultsError, match="older or newer result format"):
        open_folder(old)
    cut = tmp_path / "cut"
    shutil.copytree(runs["sensors"], cut)
    data = (cut / "events.jsonl").read_bytes()
    (cut / "events.jsonl").write_bytes(data[: len(data) // 2])
    with pytest.raises(ResultsError, match=r"events\.jsonl:\d+: the event log is truncated"):
        load_run(cut)


def test_a_damaged_log_is_not_hidden_by_the_cache(runs, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(runs["sensors"], copy)
    sha = json.loads((copy / "result.json").read_text())["provenance"]["event_log_sha256"]
    read_events(copy / "events.jsonl", sha)  # fills the cache
    lines = (copy / "events.jsonl").read_bytes().split(b"\n")
    lines[3] = lines[3][:20]
    (copy / "events.jsonl").write_bytes(b"\n".join(lines))
    with pytest.raises(ResultsError, match=r"events\.jsonl:4: not a complete event"):
        read_events(copy / "events.jsonl", sha)


def test_sweep_views_read_points_and_refuse_other_shapes():
    doc = {"format": "cangtwin.sweep/1", "points": [
        {"params": {"k": k, "outage_s": o}, "metrics": {"recall": r, "false_alarms_per_site_day": f}}
        for k, o, r, f in [(2, 0, 1.0, 0.5), (3, 0, 1.0, 0.1), (2, 600, 0.5, 0.4), (3, 600, 0.5, 0.0)]]}
    heat, curve = sweep_figures(doc, "en")
    assert heat["data"][0]["z"] == [[1.0, 1.0], [0.5, 0.5]]
    assert len(curve["data"][0]["x"]) == 4
    with pytest.raises(ResultsError, match="expected `points`"):
        sweep_figures({"format": "cangtwin.sweep/1", "grid": []}, "en")


def test_dash_command_refuses_bad_input_with_exit_2(tmp_path):
    from click.testing import CliRunner

    from cangtwin.dash_app.cli import dash

    runner = CliRunner()
    missing = runner.invoke(dash, [str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no such folder" in missing.output and "Traceback" not in missing.output
    users = tmp_path / "users.yaml"
    users.write_text("users:\n  alice: {bank: bank-a}\n")
    bad_users = runner.invoke(dash, ["--users", str(users)])
    assert bad_users.exit_code == 2 and f"{users}:2" in bad_users.output and "password" in bad_users.output
