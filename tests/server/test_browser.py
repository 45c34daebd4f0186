"""The web page of ``phaser serve`` in headless Chromium (Selenium and Debian's chromium-driver).

One test walks a user's path: open the page with a token, paste a plan with a misspelt key and
see the problem inline with its field path, pick a plan from the server's root, upload one whose
data path leaves the root and see the refusal, paste a valid plan, submit it, watch the live view
(iteration counter, object phase and probe previews, error plot, log) while one local worker runs
it, see the job end ``done`` and its outputs listed as links with thumbnails of its figures. It
saves the live view as a screenshot in the test's folder, and
to ``docs/serve/live_view.png`` when ``PHASER_UPDATE_SCREENSHOTS=1``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import TOKEN, LiveServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "serve" / "live_view.png"
WAIT_S = 120.0  # for hangs, not speed: one full-suite run on a loaded 2-core machine timed out at 60 s
NITER = 30

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
    reason="the browser test needs Debian's chromium and chromium-driver "
    "(apt-get install -y chromium chromium-driver): /usr/bin/chromium or /usr/bin/chromedriver is missing",
)

PLAN = f"""\
name: browser_live_view
backend: jax
dtype: float32
seed: 0
raw_data: {{type: manual, path: data.h5}}
init:
  probe: {{type: focused, conv_angle: 20.0, defocus: 100.0}}
  scan: {{type: raster}}
engines:
- type: gradient
  niter: {NITER}
  grouping: 32
  noise_model: {{type: poisson, eps: 0.1}}
  solvers:
    object: {{type: adam, learning_rate: 0.05}}
    probe: {{type: adam, learning_rate: 0.01}}
  update_probe: {{after: 5}}
  save_options: {{images: [probe, object_phase_stack]}}
"""
# the misspelt key the page must point at, with its field path
BAD_PLAN = PLAN.replace(f"  niter: {NITER}", f"  niters: {NITER}")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The server's root folder with a tiny simulated dataset (8x8 scan, 32x32 patterns)."""
    from phaser.cli import main

    folder = tmp_path / "root"
    folder.mkdir()
    argv = ["simulate", "--out", str(folder / "data.h5"), "--scan", "8", "8", "--pattern-size", "32"]
    assert main(argv) == 0
    (folder / "plans").mkdir()
    (folder / "plans" / "picked.yaml").write_text(PLAN.replace("path: data.h5", "path: ../data.h5"))
    return folder


@pytest.fixture
def server(root: Path, tmp_path: Path) -> Iterator[LiveServer]:
    """A real server on a loopback port, with a token and one local worker process."""
    from phaser.server.app import ServerConfig
    from phaser.server.cli import LocalWorkers

    config = ServerConfig(db_url=f"sqlite:///{tmp_path / 'jobs.db'}", roots=[root], token=TOKEN)
    live = LiveServer(config)
    workers = LocalWorkers(1, live.url, TOKEN, root / "jobs")
    config.on_started.append(workers.start)
    config.on_stopping.append(workers.stop)
    with live:
        yield live


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium, quit whatever happens."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="phaser-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--hide-scrollbars", "--window-size=1440,1000", f"--user-data-dir={profile}",
    ):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def paste(driver: Any, element_id: str, text: str) -> None:
    """Replace a text field's content as a paste does (one ``input`` event)."""
    driver.execute_script(
        "const field = document.getElementById(arguments[0]);"
        "field.value = arguments[1];"
        "field.dispatchEvent(new Event('input', {bubbles: true}));",
        element_id,
        text,
    )


def text_of(driver: Any, element_id: str) -> str:
    return driver.find_element("id", element_id).text


# Records every text the iteration counter shows, so fast updates are not missed between polls.
WATCH_COUNTER = """
window.phaserSeen = [];
const counter = document.getElementById('live-iteration');
new MutationObserver(() => window.phaserSeen.push(counter.textContent))
  .observe(counter, {childList: true, characterData: true, subtree: true});
"""


def test_submit_and_watch_a_job(root: Path, server: LiveServer, browser: Any) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    started = time.monotonic()
    wait = WebDriverWait(browser, WAIT_S, poll_frequency=0.1)

    browser.get(f"{server.url}/?token={TOKEN}")
    wait.until(lambda d: "updated" in text_of(d, "server-status"))
    assert "token" not in browser.current_url, "the page keeps the token out of the address bar"
    browser.execute_script(WATCH_COUNTER)

    # a misspelt key: the problem is listed next to the editor, with its field path, before submitting
    paste(browser, "plan-text", BAD_PLAN)
    wait.until(lambda d: "engines[0].niters" in text_of(d, "validation-problems"))
    assert "niter" in text_of(browser, "validation-problems").split("engines[0].niters", 1)[1]
    assert "problem" in text_of(browser, "validation-status")
    assert not browser.find_element("id", "submit-button").is_enabled()

    # a plan picked from the server's root validates by its path
    browser.find_element("id", "browse-button").click()
    wait.until(lambda d: "data.h5" in text_of(d, "picker-entries"))
    browser.find_element("xpath", "//ul[@id='picker-entries']//button[text()='plans/']").click()
    wait.until(lambda d: text_of(d, "picker-dir") == "/plans")
    browser.find_element("xpath", "//ul[@id='picker-entries']//button[text()='picked.yaml']").click()
    wait.until(lambda d: text_of(d, "validation-status").startswith("valid"))
    assert text_of(browser, "selected-path-name") == "plans/picked.yaml"
    browser.find_element("id", "clear-path").click()
    browser.find_element("id", "browse-button").click()

    # the same file uploaded from this computer: its data path now climbs out of the root, refused (403)
    browser.find_element("id", "plan-upload").send_keys(str(root / "plans" / "picked.yaml"))
    wait.until(lambda d: "outside the server's root" in text_of(d, "validation-status"))
    assert "raw_data.path" in text_of(browser, "validation-status")
    assert not browser.find_element("id", "submit-button").is_enabled()

    # the corrected plan validates, and is submitted
    paste(browser, "plan-text", PLAN)
    wait.until(lambda d: text_of(d, "validation-status").startswith("valid"))
    assert "browser_live_view" in text_of(browser, "validation-status")
    assert text_of(browser, "validation-problems") == ""
    submit = browser.find_element("id", "submit-button")
    wait.until(lambda d: submit.is_enabled())
    submit.click()

    # the page selects the new job: its live view fills in while the worker runs it
    wait.until(lambda d: "browser_live_view" in text_of(d, "live-name"))
    wait.until(lambda d: d.find_element("id", "img-object").is_displayed())
    wait.until(lambda d: text_of(d, "live-state") == "done")
    wait.until(lambda d: "running 'browser_live_view'" in text_of(d, "log-tail"))
    wait.until(lambda d: text_of(d, "live-out-dir").endswith("job-1"))

    seen = [int(m.group(1)) for text in browser.execute_script("return window.phaserSeen")
            if (m := re.match(r"iteration (\d+) / (\d+)", text))]  # fmt: skip
    assert seen and seen[-1] == NITER, seen
    assert seen == sorted(seen) and any(0 < i < NITER for i in seen), f"the counter should step up: {seen}"
    assert text_of(browser, "live-iteration") == f"iteration {NITER} / {NITER}"
    for image_id in ("img-object", "img-probe", "img-probe-recip"):
        width = browser.execute_script(f"return document.getElementById('{image_id}').naturalWidth")
        assert width > 0, f"{image_id} shows no image"
    plot_points = browser.execute_script("return document.getElementById('error-plot').getAttribute('aria-label')")
    assert f"{NITER} points" in plot_points
    # the finished job's outputs are links, its PNG figures thumbnails (fetched with the token)
    wait.until(lambda d: d.find_elements("xpath", "//ul[@id='output-entries']//a[text()='final.h5']"))
    wait.until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#output-thumbs img')].some((i) => i.naturalWidth > 0)"
    ))  # fmt: skip
    row = browser.find_element("css selector", "#jobs-body tr")
    assert "browser_live_view" in row.text and "done" in row.text

    # no script error on the way (4xx answers to fetch() are logged by Chromium as network errors)
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and e.get("source") != "network"]
    assert not errors, errors

    screenshot = DOCS_SCREENSHOT if os.environ.get("PHASER_UPDATE_SCREENSHOTS") == "1" else root / "live_view.png"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    # the whole page in one picture: a viewport as tall as the page
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1440, "height": min(height, 2400), "deviceScaleFactor": 1, "mobile": False},
    )
    assert browser.save_screenshot(str(screenshot))
    assert time.monotonic() - started < WAIT_S * 2


def test_the_live_view_shows_a_study_and_a_multislice_job(tmp_path: Path, dataset_root: Path, browser: Any) -> None:
    """Updates posted as a worker would: a study's progress and dashboard command; a job's slices."""
    import httpx
    import numpy as np
    import optuna
    from selenium.webdriver.support.ui import WebDriverWait

    from phaser.server.app import ServerConfig
    from phaser.server.previews import state_previews
    from tests.phaser_opt.conftest import write_study
    from tests.server.conftest import AUTH, tiny_plan

    folder = tmp_path / "root"
    write_study(folder / "study", dataset_root / "data.h5", n_trials=2)
    (folder / "data.h5").symlink_to(dataset_root / "data.h5")
    config = ServerConfig(db_url=f"sqlite:///{tmp_path / 'jobs.db'}", roots=[folder, dataset_root], token=TOKEN)
    with LiveServer(config) as live:
        post = lambda path, body: httpx.post(f"{live.url}{path}", json=body, headers=AUTH)  # noqa: E731
        study_id = post("/api/jobs", {"path": "study/study.yaml"}).json()["id"]
        post("/api/workers/claim", {"worker": "w"})
        update = {"kind": "study", "iteration": 1, "niter": 2, "errors": [[0, 0.5]], "best": 0.5, "best_trial": 0}
        post(f"/api/jobs/{study_id}/update", {**update, "trial": 0, "value": 0.5, "error": 0.5, "worker": "w"})
        slices = np.exp(1j * np.stack([np.full((24, 24), k, dtype=float) for k in range(3)]))
        plan_id = post("/api/jobs", {"plan_yaml": tiny_plan()}).json()["id"]
        post("/api/workers/claim", {"worker": "w"})
        previews = state_previews(slices, np.ones((2, 16, 16), dtype=complex))
        post(f"/api/jobs/{plan_id}/update", {"iteration": 1, "niter": 3, "errors": [1.0], "worker": "w", **previews})

        wait = WebDriverWait(browser, WAIT_S, poll_frequency=0.1)
        browser.get(f"{live.url}/?token={TOKEN}#job={study_id}")
        wait.until(lambda d: "trials 1 / 2 done" in text_of(d, "study-progress"))
        assert "best 0.5 (trial 0)" in text_of(browser, "study-best")
        assert text_of(browser, "study-dashboard").startswith("phaser-opt dashboard ")
        assert text_of(browser, "study-dashboard").endswith("study.yaml")
        browser.find_element("id", "open-dashboard").click()  # no trial has reached the storage yet
        wait.until(lambda d: "no dashboard: the storage holds no study" in text_of(d, "live-message"))
        optuna.create_study(study_name="tiny", storage=f"sqlite:///{folder / 'study' / 'tiny.db'}")
        browser.find_element("id", "open-dashboard").click()
        wait.until(lambda d: d.find_element("id", "dashboard-link").is_displayed())
        href = browser.find_element("id", "dashboard-link").get_attribute("href")
        assert href.startswith("http://127.0.0.1:") and "/dashboard/studies/" in href
        if len(browser.window_handles) > 1:  # the dashboard's tab: close it, back to the page
            browser.switch_to.window(browser.window_handles[-1])
            browser.close()
            browser.switch_to.window(browser.window_handles[0])
        assert not browser.find_element("id", "live-images").is_displayed()
        assert "1 / 2 trials" in browser.find_element("css selector", "#jobs-body").text

        browser.find_element("xpath", "//tbody[@id='jobs-body']//button[text()='tiny']").click()
        wait.until(lambda d: d.find_element("id", "img-slices").is_displayed())
        assert "3 slices" in text_of(browser, "cap-slices") and "2 probe modes" in text_of(browser, "cap-probe")
        assert not browser.find_element("id", "live-study").is_displayed()
        width = browser.execute_script("return document.getElementById('img-slices').naturalWidth")
        assert width == 3 * 24 + 2 * 2
