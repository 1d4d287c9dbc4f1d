"""The dashboard driven as a person would: Debian's Chromium, headless, through chromedriver.

The app runs in this process on a free loopback port (Werkzeug, in a thread). Each test
asserts what the page says (texts, element counts), and saves a screenshot of its view
under docs/screenshots/.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest
from selenium.webdriver.common.by import By
from werkzeug.security import generate_password_hash

from cangtwin.dash_app.access import Access, User
from cangtwin.dash_app.app import create_app
from dash_fixtures.browser import (  # noqa: F401 - `browser` is a fixture
    browser, choose, shoot, start, tab, text, type_into, wait)
from dash_fixtures import build
from dash_fixtures.build import recorded_runs

build.start()  # the recordings run in other processes while the tests collected before these run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield recorded_runs()


def indexed(app, runs):
    """The app with the day's event log indexed before the first page, as `cangtwin dash DIR` does."""
    app.server.config["runs"].get(runs["medium"])
    return app


@pytest.fixture(scope="module")
def server(runs):
    url, httpd, thread = start(indexed(create_app(runs["root"]), runs))
    yield url
    httpd.shutdown()
    thread.join(10)


@pytest.fixture(scope="module")
def users_server(runs):
    """The dashboard with a users file: bank A's risk officer and the operator, with passwords."""
    users = {"alice": User(bank="bank-a", password=generate_password_hash("alice-pw")),
             "ops": User(role="operator", password=generate_password_hash("ops-pw"))}
    url, httpd, thread = start(indexed(create_app(runs["root"], Access(users)), runs))
    yield url
    httpd.shutdown()
    thread.join(10)


def compare_table(driver) -> list[list[str]]:
    """The compare table's cells, read in one step in the page (it may be re-rendered meanwhile)."""
    return driver.execute_script(
        "const t = document.getElementById('compare-table');"
        "return t ? [...t.rows].map(r => [...r.cells].map(c => c.innerText)) : [];")


def open_page(driver, server, viewer: str | None = None) -> None:
    driver.get(server)
    driver.execute_script("window.sessionStorage.clear()")
    driver.get(server)
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#floor .scatterlayer .trace"), "the floor plan")
    if viewer:
        choose(driver, "login-user", viewer)
        driver.find_element(By.ID, "login-button").click()
        wait(driver, lambda d: text(d, "viewer-label").endswith(viewer), f"login as {viewer}")


def alert_ids(driver) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#alert-feed .alert-id")]


def feed_for(driver, viewer: str) -> list[str]:
    """The alert ids listed once the feed shown was made for `viewer` (the operator's may come first)."""
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f"#alert-feed [data-viewer='{viewer}']")
         and all(alert_ids(d)), f"the alert feed of {viewer}")
    return alert_ids(driver)


def the_thefts_alerts(result: dict, theft: str) -> list[str]:
    """The theft's detection and what it tripped on the way out (the bay scan, geofence): every
    alert its label explains, all of them on bank A's goods."""
    label = next(lid for lid, det in result["detections"].items() if det["alert"] == theft)
    return sorted(aid for aid, labels in result["explained_by"].items() if label in labels)


def test_replay_plays_the_recorded_run(browser, server, runs):
    open_page(browser, server)
    assert "dash-medium" in text(browser, "run")
    start = text(browser, "cursor-label")
    legend = {e.text for e in browser.find_elements(By.CSS_SELECTOR, "#floor .legendtext")}
    assert {"pledged", "not pledged", "forklift"} <= legend
    choose(browser, "speed", "600×")
    browser.find_element(By.ID, "play").click()
    wait(browser, lambda d: text(d, "cursor-label") > start and text(d, "play") == "Pause", "the replay to advance")
    time.sleep(2)
    browser.find_element(By.ID, "play").click()
    wait(browser, lambda d: text(d, "play") == "Play", "the pause")
    time.sleep(1.0)  # a tick already on its way may still land
    moved = text(browser, "cursor-label")
    assert moved > start
    time.sleep(1.5)
    assert text(browser, "cursor-label") == moved  # paused: the clock stays
    assert browser.find_elements(By.CSS_SELECTOR, "#timeline .bars .point")  # the message-rate backdrop
    shoot(browser, "replay")


def test_alert_click_shows_evidence_and_verify_says_valid(browser, server, runs):
    open_page(browser, server)
    tab(browser, "alerts")
    result = json.loads((runs["medium"] / "result.json").read_text())
    assert sorted(feed_for(browser, "operator")) == sorted(a["id"] for a in result["alerts"])
    theft = next(a for a in result["alerts"] if a["rule"] == "outbound-unauthorized")
    browser.find_element(By.XPATH, f"//div[contains(@class,'alert-row')][.//span[text()='{theft['id']}']]").click()
    wait(browser, lambda d: theft["id"] in text(d, "alert-title"), "the alert's detail")
    detail = text(browser, "alert-detail")
    assert "4.5 出入库监管" in detail and "min_lots" in detail and "¥" in detail and "bank-a" in detail
    assert len(browser.find_elements(By.CSS_SELECTOR, "#alert-detail .evidence-entry")) >= 2
    browser.find_element(By.ID, "verify").click()
    wait(browser, lambda d: text(d, "verify-status"), "the verification")
    assert text(browser, "verify-status") == "Proof valid"
    assert "✘" not in text(browser, "verify-result") and "✔ signatures@" in text(browser, "verify-result")
    shoot(browser, "alerts")


def test_compare_view_puts_two_runs_side_by_side(browser, server, runs):
    open_page(browser, server)
    tab(browser, "compare")
    table = wait(browser, lambda d: compare_table(d), "the comparison")
    assert "dash-medium" in table[0][1] and "dash-small-sensors" in table[0][2]
    assert len(table) == 10  # header, status and 8 figures
    assert len(browser.find_elements(By.CSS_SELECTOR, "#compare-body .js-plotly-plot")) == 1
    assert "no detections to show" in text(browser, "compare-body")  # the sensor run caught nothing, and says so
    shoot(browser, "compare")
    type_into(browser, "compare-folder", str(runs["suite"]))  # a whole suite against a run
    table = wait(browser, lambda d: (t := compare_table(d)) and "suite (2)" in t[0][2] and t, "the suite's column")
    assert "dash-medium" in table[0][1]
    rows = {row[0]: row[1:] for row in table[1:]}
    assert rows["runs"] == ["1", "2"] and rows["detections"][1] == "2" and rows["false alarms"][1] == "0"
    shoot(browser, "compare-suite")


def test_kpis_show_latency_stages_rules_and_messages(browser, server, runs):
    open_page(browser, server)
    tab(browser, "kpis")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#rule-table tr"), "the KPIs")
    result = json.loads((runs["medium"] / "result.json").read_text())
    rules = {a["rule"] for a in result["alerts"]}
    table = browser.find_element(By.ID, "rule-table").text
    assert all(rule in table for rule in rules)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#kpis .js-plotly-plot")) == 4
    assert text(browser, "fa-per-day") == f"{result['false_alarms_per_site_day']:.3f}"
    shoot(browser, "kpis")


def test_a_bank_sees_only_its_own_alerts(browser, server, runs):
    result = json.loads((runs["medium"] / "result.json").read_text())
    theft = next(a["id"] for a in result["alerts"] if a["rule"] == "outbound-unauthorized")
    double = next(a["id"] for a in result["alerts"] if a["rule"] == "duplicate-pledge")
    open_page(browser, server, viewer="bank-a")
    tab(browser, "alerts")
    assert sorted(feed_for(browser, "bank-a")) == the_thefts_alerts(result, theft)
    assert double not in browser.find_element(By.TAG_NAME, "body").text
    shoot(browser, "bank-a-alerts")
    tab(browser, "kpis")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#rule-table tr"), "bank A's KPIs")
    rules = browser.find_element(By.ID, "rule-table").text
    assert "outbound-unauthorized" in rules and "duplicate-pledge" not in rules
    open_page(browser, server, viewer="bank-b")
    tab(browser, "alerts")
    assert feed_for(browser, "bank-b") == [double]


def test_sensor_views_show_the_recorded_scan_frame_and_trace(browser, server, runs):
    open_page(browser, server)
    choose(browser, "run", runs["sensors"].name)
    wait(browser, lambda d: "09:00:00" in text(d, "cursor-label"), "the sensor run")
    tab(browser, "sensors")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#lidar .gl-container canvas, #lidar canvas"), "the point cloud")
    wait(browser, lambda d: (d.find_element(By.ID, "camera-img").get_attribute("src") or "").startswith("data:image/png"),
         "the camera frame")
    caption = wait(browser, lambda d: text(d, "lidar-caption"), "the point count")
    shown, total = (int(n.replace(",", "")) for n in caption.split(" points")[0].split(" of "))
    assert 0 < shown <= 20_000 < total
    assert len(browser.find_elements(By.CSS_SELECTOR, "#scale .scatterlayer .trace, #scale .gl-container")) >= 1
    shoot(browser, "sensors")


def test_language_switch_relabels_the_page(browser, server, runs):
    open_page(browser, server)
    browser.find_element(By.XPATH, "//label[contains(., '中文')]").click()
    wait(browser, lambda d: text(d, "tab-replay") == "回放", "Chinese labels")
    assert text(browser, "play") == "播放" and text(browser, "tab-alerts") == "告警"
    assert "平面图" in browser.find_element(By.ID, "floor").text
    shoot(browser, "chinese")
    browser.find_element(By.XPATH, "//label[contains(., 'English')]").click()
    wait(browser, lambda d: text(d, "tab-replay") == "Replay", "English labels")


def test_bad_input_gets_a_message_in_the_page(browser, server, runs, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(runs["sensors"], old)
    doc = json.loads((old / "result.json").read_text())
    doc["format"] = "cangtwin.result/0"
    (old / "result.json").write_text(json.dumps(doc))
    cut = tmp_path / "cut"
    shutil.copytree(runs["sensors"], cut)
    (cut / "events.jsonl").write_bytes((cut / "events.jsonl").read_bytes()[:-200])
    empty = tmp_path / "empty"
    empty.mkdir()
    open_page(browser, server)
    for folder, message in ((empty, "not a results folder"), (old, "older or newer result format"),
                            (cut, "the event log is truncated")):
        type_into(browser, "folder", str(folder))
        wait(browser, lambda d: message in text(d, "folder-error") + text(d, "run-error"), f"the message for {folder.name}")
        page = browser.find_element(By.TAG_NAME, "body").text
        assert "Traceback" not in page and "File \"" not in page
    shoot(browser, "bad-input")


def test_with_a_users_file_a_bank_logs_in_with_its_password(browser, users_server, runs):
    result = json.loads((runs["medium"] / "result.json").read_text())
    theft = next(a["id"] for a in result["alerts"] if a["rule"] == "outbound-unauthorized")
    open_page(browser, users_server)
    assert text(browser, "viewer-label").startswith("Not logged in")
    tab(browser, "alerts")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#alert-feed [data-viewer='']"), "the empty feed")
    assert alert_ids(browser) == [] and "No alerts visible" in text(browser, "alert-feed")
    choose(browser, "login-user", "alice")
    type_into(browser, "login-password", "wrong")
    browser.find_element(By.ID, "login-button").click()
    wait(browser, lambda d: text(d, "login-status") == "Wrong user or password.", "the refusal")
    assert alert_ids(browser) == []
    type_into(browser, "login-password", "alice-pw")
    browser.find_element(By.ID, "login-button").click()
    wait(browser, lambda d: text(d, "viewer-label").endswith("bank-a"), "alice's login")
    assert sorted(feed_for(browser, "bank-a")) == the_thefts_alerts(result, theft)
    shoot(browser, "login-bank-a")


def test_a_multi_warehouse_run_has_a_warehouse_picker(browser, server, runs):
    result = json.loads((runs["pair"] / "result.json").read_text())
    open_page(browser, server)
    type_into(browser, "folder", str(runs["pair"].parent))
    wait(browser, lambda d: "dash-pair" in text(d, "run"), "the pair run")
    wait(browser, lambda d: d.find_element(By.ID, "warehouse-picker").is_displayed(), "the warehouse picker")
    wait(browser, lambda d: "· w1 ·" in d.find_element(By.ID, "floor").text, "warehouse w1's plan")
    choose(browser, "warehouse", "w2")
    wait(browser, lambda d: "· w2 ·" in d.find_element(By.ID, "floor").text, "warehouse w2's plan")
    choose(browser, "speed", "600×")
    browser.find_element(By.ID, "play").click()  # a tick is 5 simulated minutes: the theft is caught at ~09:06
    wait(browser, lambda d: text(d, "cursor-label") >= "2026-03-02 09:07", "the replay to pass the theft")
    browser.find_element(By.ID, "play").click()
    wait(browser, lambda d: "alert raised" in {e.text for e in d.find_elements(By.CSS_SELECTOR, "#floor .legendtext")},
         "the stolen bay marked")
    bay_labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#floor .textpoint")]
    assert "B01" in bay_labels and not any(label.startswith("w1.") for label in bay_labels)
    shoot(browser, "multi-warehouse")
    tab(browser, "alerts")
    assert sorted(feed_for(browser, "operator")) == sorted(a["id"] for a in result["alerts"])
    sites = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#alert-feed .alert-site")]
    assert sorted(sites) == sorted(a["site"] for a in result["alerts"]) and "w2" in sites
    tab(browser, "kpis")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#warehouse-table .warehouse-row"), "alerts per warehouse")
    per = {r.text.split()[0]: r.text.split()[1:] for r in browser.find_elements(By.CSS_SELECTOR, ".warehouse-row")}
    expected = {site: [str(sum(a["site"] == site for a in result["alerts"])), "0"] for site in ("w1", "w2", "cloud")}
    assert per == expected and expected["w2"] != ["0", "0"]
    browser.execute_script("arguments[0].scrollIntoView()", browser.find_element(By.ID, "warehouse-table"))
    shoot(browser, "multi-warehouse-kpis")
