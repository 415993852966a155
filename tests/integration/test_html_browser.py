"""The HTML report in a real browser (headless Chromium via selenium): the table and every plot render,
and the transcript browser switches problems. Saves a screenshot in tmp and, where $HYBRIDCOT_SCREENSHOT is set, also to runs/report_screenshot.png
(or to $HYBRIDCOT_SCREENSHOT itself when it ends in .png).

The page is built from a small fake run, or from a real run folder given as $HYBRIDCOT_HTML_RUN
(e.g. runs/demo). Skips where /usr/bin/chromium or chromedriver is missing (CI: apt-get install -y
chromium chromium-driver).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from hybridcot.evaluation.html_report import write_html_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_html_report import fake_run  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[2]


def _driver():
    chromedriver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium chromium-driver)")
    if not Path(chromedriver).is_file():
        pytest.skip("chromedriver is missing (apt-get install -y chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1400,1800", "--hide-scrollbars"):
        opts.add_argument(a)
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=chromedriver), options=opts)


@pytest.fixture
def page(tmp_path):
    run = os.environ.get("HYBRIDCOT_HTML_RUN")
    if run:
        return write_html_report(run, tmp_path / "report.html")
    return write_html_report(fake_run(tmp_path / "run"), tmp_path / "report.html")


def test_page_renders_in_chromium(page, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver = _driver()
    try:
        driver.get(page.resolve().as_uri())
        WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
        rows = driver.find_elements(By.CSS_SELECTOR, "#results-table tbody tr")
        assert rows and all(r.is_displayed() for r in rows)
        assert driver.find_element(By.ID, "results-table").size["height"] > 20
        imgs = driver.find_elements(By.CSS_SELECTOR, "img.plot")
        assert imgs
        WebDriverWait(driver, 30).until(
            lambda d: all(d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i) for i in imgs))
        for i in imgs:
            assert driver.execute_script("return arguments[0].naturalWidth", i) > 0
            assert i.size["width"] > 0
        box = driver.find_element(By.ID, "transcripts")
        before = box.text
        assert before and box.find_elements(By.CSS_SELECTOR, ".answer")
        select = Select(driver.find_element(By.ID, "problem-select"))
        assert len(select.options) >= 2
        select.select_by_index(len(select.options) - 1)
        WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "transcripts").text != before)
        assert box.get_attribute("data-problem") == select.first_selected_option.text.split(" ")[0]
        select.select_by_index(0)
        WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "transcripts").text == before)
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert not errors, errors
        shots = [tmp_path / "report_screenshot.png"]
        env = os.environ.get("HYBRIDCOT_SCREENSHOT", "")
        if env:  # "1" (any non-path word): runs/report_screenshot.png in the repo; else the path given
            shots.append(Path(env) if env.endswith(".png") else REPO / "runs" / "report_screenshot.png")
        driver.execute_script("window.scrollTo(0, 0)")
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1400, min(max(int(height), 1000), 6000))
        for shot in shots:
            shot.parent.mkdir(parents=True, exist_ok=True)
            assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 0
    finally:
        driver.quit()
