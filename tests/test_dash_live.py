"""The dashboard's Live tab following a real `cangtwin serve` (private Mosquitto, bank API, ledger).

A theft sent by devices over MQTT becomes an alert that appears in the page while it watches;
the collateral table shows the coil gone; the evidence package the API serves verifies against
the parties' pinned keys; bank B's token sees none of it; a wrong token gets a message.
"""

from __future__ import annotations

import base64
import json
import signal
import time

import pytest
from selenium.webdriver.common.by import By

from cangtwin.dash_app.app import create_app
from cangtwin.dash_app.live import LiveClient, LiveError
from cangtwin.dash_app.live_view import LiveConfig
from cangtwin.platform.ledger.tree_head import public_key_bytes
from cangtwin.platform.live.config import load_deployment
from cangtwin.scenarios.live.devices import DeviceClient

from dash_fixtures.browser import browser, shoot, start, tab, text, type_into, wait  # noqa: F401 - `browser` is a fixture
from test_live_api import TOKENS, api_deployment, start_with_api
from test_live_serve import write
from test_live_transport import theft


@pytest.fixture
def platform(mosquitto, tmp_path):
    """A running `serve` with the bank API; yields (API base URL, pinned keys, keys file)."""
    config = write(tmp_path, api_deployment(tmp_path, mosquitto.port))
    process, base = start_with_api(config)
    keys = public_key_bytes(load_deployment(config).ledger.parties)
    keys_file = tmp_path / "parties.json"
    keys_file.write_text(json.dumps({k: base64.b64encode(v).decode() for k, v in keys.items()}))
    try:
        yield base, keys, keys_file
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0


def rows(driver, css: str) -> list[str]:
    return driver.execute_script(f"return [...document.querySelectorAll({css!r})].map(e => e.innerText);")


def test_live_view_follows_a_running_platform(browser, platform, mosquitto):  # noqa: F811
    base, keys, _ = platform
    app = create_app(None, live=LiveConfig(base, TOKENS["bank-a"], keys))
    url, httpd, thread = start(app)
    devices = {d: DeviceClient(mosquitto.host, mosquitto.port, "small", d) for d in ("rfid-g1", "loop-g1")}
    try:
        browser.get(url)
        browser.execute_script("window.sessionStorage.clear()")
        browser.get(url)
        wait(browser, lambda d: d.find_elements(By.ID, "tab-live"), "the page")
        tab(browser, "live")
        wait(browser, lambda d: "bank-a-desk" in text(d, "live-status"), "the live connection")
        assert "bank-a" in text(browser, "live-status") and base in text(browser, "live-status")
        loans = wait(browser, lambda d: rows(d, ".live-loan-row"), "bank A's loans")
        assert len(loans) == 1 and loans[0].startswith("LN-1") and "3 / 3" in loans[0]
        assert rows(browser, ".live-receipt-row")[0].startswith("WR-1")
        assert text(browser, "no-live-alerts") == "No alerts visible to this token yet."

        for device, frame in theft(2, 1, time.time()):  # a pledged coil leaves with no release
            devices[device].send(frame)
        wait(browser, lambda d: "outbound-unauthorized" in " ".join(rows(d, ".live-alert-row .live-rule")),
             "the theft's alert to appear")
        [alert_id] = rows(browser, ".live-alert-row .live-alert-id")
        assert "1 alerts (1 new" in text(browser, "live-alert-count")
        wait(browser, lambda d: "B01-02" in " ".join(rows(d, ".live-loan-row .live-absent")), "the coil marked gone")
        assert "2 / 3" in rows(browser, ".live-loan-row")[0]

        row = f"//div[contains(@class,'live-alert-row')][.//span[text()='{alert_id}']]"
        for _ in range(30):  # the package is served once a signed tree head covers the alert (409 before)
            browser.find_element(By.XPATH, row).click()
            wait(browser, lambda d: alert_id in text(d, "live-alert-title"), "the alert's detail")
            if browser.find_elements(By.CSS_SELECTOR, "#live-alert-detail .live-evidence-entry"):
                break
            assert "not under a signed tree head yet" in text(browser, "live-alert-detail")
            time.sleep(1)
        assert len(browser.find_elements(By.CSS_SELECTOR, "#live-alert-detail .live-evidence-entry")) >= 2
        assert "lot:B01-02" in text(browser, "live-alert-detail") and "4.5" in text(browser, "live-alert-detail")
        browser.find_element(By.ID, "live-verify").click()
        wait(browser, lambda d: text(d, "live-verify-status"), "the verification")
        assert text(browser, "live-verify-status") == "Proof valid"
        assert "✘" not in text(browser, "live-verify-result") and "✔ keys" in text(browser, "live-verify-result")
        shoot(browser, "live")

        type_into(browser, "live-token", TOKENS["bank-b"])  # bank B's own token: it sees none of bank A's
        browser.find_element(By.ID, "live-connect").click()
        wait(browser, lambda d: "bank-b-desk" in text(d, "live-status"), "bank B's connection")
        wait(browser, lambda d: text(d, "no-live-alerts") and text(d, "no-live-loans"), "bank B's empty view")
        assert alert_id not in browser.find_element(By.TAG_NAME, "body").text
        assert rows(browser, ".live-receipt-row") == [] and text(browser, "no-live-receipts")
        shoot(browser, "live-bank-b")
        browser.find_element(By.XPATH, "//label[contains(., '中文')]").click()
        wait(browser, lambda d: "正在跟踪" in text(d, "live-status"), "the Chinese status line")
        assert text(browser, "tab-live") == "实时" and text(browser, "no-live-alerts") == "该令牌暂无可见告警。"
        assert "押品状态" in browser.find_element(By.ID, "panel-live").text
        browser.find_element(By.XPATH, "//label[contains(., 'English')]").click()
        wait(browser, lambda d: "Following" in text(d, "live-status"), "English again")

        type_into(browser, "live-token", "ctw_not-a-token")
        browser.find_element(By.ID, "live-connect").click()
        wait(browser, lambda d: "the API refused the token" in text(d, "live-error"), "the refusal")
        assert "Traceback" not in browser.find_element(By.TAG_NAME, "body").text
    finally:
        for device in devices.values():
            device.close()
        httpd.shutdown()
        thread.join(10)


def test_live_client_refuses_bad_addresses_and_tokens(platform):
    base, _, _ = platform
    with pytest.raises(LiveError, match="give the API's address"):
        LiveClient("127.0.0.1:8080", "x")
    with pytest.raises(LiveError, match="a token is needed"):
        LiveClient(base, "")
    with pytest.raises(LiveError, match="refused the token: .*unknown"):
        LiveClient(base, "ctw_nobody")
    client = LiveClient(base + "/v1/", TOKENS["bank-b"])
    snap = client.poll()
    assert snap.me["bank"] == "bank-b" and snap.loans == [] and snap.alerts == [] and snap.receipts == []
    with pytest.raises(LiveError, match=r"GET /v1/alerts/small-A000001: path.alert_id: no alert"):
        client.alert("small-A000001")


def test_dash_command_refuses_live_options_it_cannot_use(tmp_path):
    from click.testing import CliRunner

    from cangtwin.dash_app.cli import dash
    from services import free_port

    runner = CliRunner()
    silent = runner.invoke(dash, ["--live", f"http://127.0.0.1:{free_port()}", "--token", "ctw_x"])
    assert silent.exit_code == 2 and "no answer from the bank API" in silent.output, silent.output
    alone = runner.invoke(dash, ["--token", "ctw_x"])
    assert alone.exit_code == 2 and "--token: give --live URL as well" in alone.output
    keys = tmp_path / "parties.json"
    keys.write_text('{"bank": "not base64!"}')
    bad_keys = runner.invoke(dash, ["--live", "http://127.0.0.1:1", "--token", "ctw_x", "--keys", str(keys)])
    assert bad_keys.exit_code == 2 and f"{keys}: not the parties' keys" in bad_keys.output, bad_keys.output
    assert "Traceback" not in silent.output + alone.output + bad_keys.output
