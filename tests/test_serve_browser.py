"""The page in a real browser: Debian's chromium (headless, driven by Selenium) against a real
``python -m service`` on 127.0.0.1. Saves screenshots under pytest's tmp dir and prints their paths."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.support.testkit import ROOT, free_port, picture, save, system_packages_missing, untrained_run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def browser_missing() -> str | None:
    if not CHROMIUM or not CHROMEDRIVER:
        return system_packages_missing("Debian's chromium and chromium-driver are",
                                       *(["chromium"] if not CHROMIUM else []),
                                       *(["chromium-driver"] if not CHROMEDRIVER else []))
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("browser")
    run = untrained_run(root / "run")
    port = free_port()
    log = open(root / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "service", str(run), "--port", str(port)], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            assert proc.poll() is None, (root / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the service did not start in 180 s"
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=5) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.3)
        yield base, root
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
        log.close()
    assert proc.returncode in (0, -15), (root / "serve.log").read_text()[-3000:]


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def api_probability(base: str, path) -> float:
    request = urllib.request.Request(f"{base}/v1/predict", data=path.read_bytes(),
                                     headers={"content-type": "image/png"}, method="POST")
    with urllib.request.urlopen(request, timeout=60) as r:
        return json.loads(r.read())["results"][0]["meme_probability"]


def painted_pixels(driver, card) -> int:
    """Pixels of the card's heat map canvas that are not fully transparent."""
    return driver.execute_script("""
        const c = arguments[0].querySelector('canvas.heatmap');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
        return n;""", card)


def test_upload_pictures_and_see_probability_and_heat_map(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    base, _ = server
    files = [save(picture(320, 240, seed=11, caption="SUCH MEME"), tmp_path / "wide.png"),
             save(picture(200, 300, seed=12, caption=None), tmp_path / "tall.png")]
    browser.get(base + "/")
    WebDriverWait(browser, 60).until(lambda d: d.find_element(By.ID, "model").text.startswith("Model memenet"))
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("id") == "files"      # the chooser is keyboard-reachable

    browser.find_element(By.ID, "files").send_keys("\n".join(str(p) for p in files))
    WebDriverWait(browser, 180).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .card.done")) == 2)
    cards = {c.find_element(By.CSS_SELECTOR, ".name").text: c for c in browser.find_elements(By.CSS_SELECTOR, ".card")}
    assert set(cards) == {"wide.png", "tall.png"}
    for path in files:
        card = cards[path.name]
        prob = card.find_element(By.CSS_SELECTOR, ".probability")
        expected = api_probability(base, path)
        assert re.fullmatch(r"meme probability \d{1,3}\.\d%", prob.text)
        assert prob.text == f"meme probability {expected * 100:.1f}%"
        assert float(prob.get_attribute("data-probability")) == pytest.approx(expected, abs=1e-5)
        assert card.find_element(By.CSS_SELECTOR, ".label").text in ("Meme", "Not a meme")
        assert painted_pixels(browser, card) > 0, "the heat map canvas is blank"
    shot = tmp_path / "serve_page.png"
    assert browser.save_screenshot(str(shot))
    print(f"screenshot: {shot}")

    browser.set_window_size(390, 844)                                              # a phone
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    phone = tmp_path / "serve_page_phone.png"
    assert browser.save_screenshot(str(phone))
    print(f"screenshot: {phone}")


def test_a_file_that_is_not_a_picture_shows_its_reason(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base, _ = server
    notes = tmp_path / "notes.png"
    notes.write_text("just some text")
    browser.get(base + "/")
    browser.find_element(By.ID, "files").send_keys(str(notes))
    status = WebDriverWait(browser, 120).until(
        lambda d: d.find_element(By.CSS_SELECTOR, ".card .status.error"))
    assert status.text.startswith("Not scored: not_an_image")
