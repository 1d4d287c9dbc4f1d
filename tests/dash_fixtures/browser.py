"""Driving Debian's Chromium headless for the dashboard tests: the browser fixture and helpers.

The app under test runs in the test process on a free loopback port (Werkzeug, in a thread).
"""

from __future__ import annotations

import logging
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait
from werkzeug.serving import make_server

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
WAIT_S = 60
logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise


def start(app):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    httpd = make_server("127.0.0.1", port, app.server, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{port}/", httpd, thread


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("the browser tests need Debian's chromium and chromium-driver (.ci/bootstrap installs them)")
    profile = tempfile.mkdtemp(prefix="cangtwin-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                 "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}", "--window-size=1400,1300"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def wait(driver, condition, what: str):
    try:
        return WebDriverWait(driver, WAIT_S, poll_frequency=0.2).until(lambda d: condition(d))
    except WebDriverException as exc:
        shot = Path(tempfile.gettempdir()) / "cangtwin-dash-failed.png"
        driver.save_screenshot(str(shot))
        raise AssertionError(f"timed out waiting for {what} (page saved to {shot})") from exc


def text(driver, element_id: str) -> str:
    found = driver.find_elements(By.ID, element_id)
    return found[0].text if found else ""


def shoot(driver, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    time.sleep(0.5)  # let plotly finish drawing
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def choose(driver, dropdown_id: str, label: str) -> None:
    driver.find_element(By.ID, dropdown_id).click()
    option = wait(driver, lambda d: d.find_elements(
        By.XPATH, f"//*[contains(@class,'dash-options-list-option-text')]/span[text()='{label}']"), f"option {label}")
    option[0].click()


def type_into(driver, element_id: str, value: str) -> None:
    """Replace an input's text as typing would, then press Enter (React tracks the native setter)."""
    box = driver.find_element(By.ID, element_id)
    driver.execute_script(
        "const setter = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;"
        "setter.call(arguments[0], arguments[1]);"
        "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));", box, value)
    box.send_keys(Keys.ENTER)


def tab(driver, name: str) -> None:
    driver.find_element(By.ID, f"tab-{name}").click()
