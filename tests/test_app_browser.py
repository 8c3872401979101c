"""The Streamlit app in a real browser: headless Chromium driven by Selenium.

Why: the app is the project's face for people who never open a terminal; only a real browser
shows that the page loads, that an upload of a real X-ray produces the three linked images and
the figures, and that a bad upload gives a sentence, not a traceback. A screenshot of each state
goes to test-artifacts/ (gitignored) for a human to look at.

Chromium comes from Debian (`chromium`, `chromium-driver`; .ci/system-packages installs them) and
is driven with an explicit driver path, so Selenium Manager never tries the network. The browser
runs with background networking, component updates and sync off, in a fresh profile; the app
listens on 127.0.0.1 only.
"""
from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
DRIVER_CANDIDATES = ("/usr/bin/chromedriver",)
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--no-first-run", "--disable-default-apps", "--disable-extensions", "--window-size=1400,2200")


def find_browser() -> tuple[str, str] | None:
    """(chromium, chromedriver) paths, or None when either is missing."""
    browser = next((p for p in CHROMIUM_CANDIDATES if os.access(p, os.X_OK)), shutil.which("chromium"))
    driver = next((p for p in DRIVER_CANDIDATES if os.access(p, os.X_OK)), shutil.which("chromedriver"))
    return (browser, driver) if browser and driver else None


def install_browser() -> str:
    """Runs .ci/system-packages when we are root; returns what happened, for a skip reason."""
    script = PROJECT_ROOT / ".ci" / "system-packages"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "not root or no apt-get, so it cannot be installed here (run .ci/system-packages as root)"
    result = subprocess.run([str(script)], capture_output=True, text=True, timeout=900)
    return f".ci/system-packages exited with {result.returncode}: {result.stderr.strip()[-300:]}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def streamlit_server(model: Path, log_path: Path, timeout_s: float = 120.0):
    """`cxr-sr app` on 127.0.0.1 and a free port; yields its URL, stops it afterwards."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "launch", "app", "--model", str(model), "--port", str(port)],
                                   cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                        if response.read().strip() == b"ok":
                            break
                except OSError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the app did not start; see {log_path}:\n{log_path.read_text()[-2000:]}")
                time.sleep(0.5)
            yield url
        finally:
            os.killpg(process.pid, 15)  # streamlit and anything it started, this session only
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()


def chromium_driver(browser: str, driver_path: str, profile: Path):
    """A headless Selenium Chrome driver on the Debian chromium, with a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    return driver


# ---- fixtures -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser_paths() -> tuple[str, str]:
    pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium; part of cxr-sr[dev])")
    pytest.importorskip("streamlit", reason="streamlit is not installed (pip install streamlit; part of cxr-sr[dev])")
    found = find_browser()
    if found is None:
        attempt = install_browser()
        found = find_browser()
        if found is None:
            pytest.skip(f"chromium/chromium-driver are missing and {attempt}")
    return found


@pytest.fixture(scope="module")
def app_model(tmp_path_factory) -> Path:
    """A TorchScript file made by `cxr-sr export` from a tiny-config checkpoint."""
    from tests.export_helpers import exported_fake_run

    return exported_fake_run(tmp_path_factory.mktemp("app"))


@pytest.fixture(scope="module")
def app_url(app_model, browser_paths, tmp_path_factory):
    ARTIFACTS.mkdir(exist_ok=True)
    with streamlit_server(app_model, ARTIFACTS / "app_server.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser(browser_paths, tmp_path_factory):
    driver = chromium_driver(*browser_paths, tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def real_xray(tmp_path_factory) -> Path:
    """A 512 px centre crop of RG1_UNCR.dcm (real CR chest, MONOCHROME1, 15-bit), still a DICOM file."""
    pydicom = pytest.importorskip("pydicom")
    from launch.demo.pipeline import radiograph_path

    try:
        dataset = pydicom.dcmread(radiograph_path())
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    pixels = dataset.pixel_array
    top, left = (pixels.shape[0] - 512) // 2, (pixels.shape[1] - 512) // 2
    crop = np.ascontiguousarray(pixels[top:top + 512, left:left + 512])
    dataset.Rows, dataset.Columns = crop.shape
    dataset.PixelData = crop.tobytes()
    path = tmp_path_factory.mktemp("xray") / "RG1_centre.dcm"
    dataset.save_as(path)
    return path


# ---- page helpers ---------------------------------------------------------------------------
PAGE_TIMEOUT_S = 240  # the CI box is a shared 2-core machine


def _wait_for_text(driver, text: str, timeout_s: float = PAGE_TIMEOUT_S) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout_s, poll_frequency=0.5).until(
        lambda d: text in d.find_element(By.TAG_NAME, "body").text,
        message=f"'{text}' never appeared on the page")


def _open(driver, url: str) -> None:
    driver.get(url)
    _wait_for_text(driver, "Upload a PNG or DICOM chest X-ray to start.")


def _upload(driver, path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    field = WebDriverWait(driver, 60).until(expected_conditions.presence_of_element_located(
        (By.CSS_SELECTOR, "input[type=file]")))
    field.send_keys(str(path))


def _body(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def _no_traceback(driver) -> None:
    from selenium.webdriver.common.by import By

    assert "Traceback" not in _body(driver)
    assert not driver.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")


def _viewer_images(driver) -> list[dict]:
    """naturalWidth/Height and pane name of the images in the linked viewer's iframe."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    frame = WebDriverWait(driver, 60).until(
        lambda d: next((f for f in d.find_elements(By.TAG_NAME, "iframe")
                        if "cxr-viewer" in (f.get_attribute("srcdoc") or "")), None))
    driver.switch_to.frame(frame)
    try:
        WebDriverWait(driver, 60).until(lambda d: d.execute_script(
            "const i = document.querySelectorAll('.pane img');"
            "return i.length === 3 && Array.from(i).every(x => x.complete && x.naturalWidth > 0);"))
        return driver.execute_script(
            "return Array.from(document.querySelectorAll('.pane')).map(p => ({name: p.dataset.name,"
            " w: p.querySelector('img').naturalWidth, h: p.querySelector('img').naturalHeight}));")
    finally:
        driver.switch_to.default_content()


def _zoom_and_pan(driver) -> list[str]:
    """Clicks 'zoom in' and drags the SR pane inside the viewer; returns the three images' transforms."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    frame = next(f for f in driver.find_elements(By.TAG_NAME, "iframe") if "cxr-viewer" in (f.get_attribute("srcdoc") or ""))
    driver.switch_to.frame(frame)
    try:
        before = driver.execute_script("return Array.from(document.querySelectorAll('.pane img')).map(i => i.style.transform);")
        driver.find_element(By.CSS_SELECTOR, "button[data-zoom='1.5']").click()
        sr_pane = driver.find_element(By.CSS_SELECTOR, ".pane[data-name='sr']")
        ActionChains(driver).move_to_element(sr_pane).click_and_hold().move_by_offset(40, 25).release().perform()
        after = driver.execute_script("return Array.from(document.querySelectorAll('.pane img')).map(i => i.style.transform);")
    finally:
        driver.switch_to.default_content()
    assert len(set(before)) == 1 and before[0] != after[0]
    return after


# ---- tests ----------------------------------------------------------------------------------
def test_real_xray_upload_shows_three_linked_images_and_figures(browser, app_url, real_xray):
    """A real radiograph (DICOM crop of RG1_UNCR.dcm) treated as HR: downsampled, upscaled, compared.

    The three panes hold LR (128 px, shown x4), bicubic and SR (512 px) in one coordinate frame;
    the metrics table, the difference maps and both downloads appear; the page says that the
    upload was treated as the original. Zooming and dragging one pane moves all three alike.
    """
    from selenium.webdriver.common.by import By

    _open(browser, app_url)
    _upload(browser, real_xray)
    _wait_for_text(browser, "Download SR as DICOM")
    panes = _viewer_images(browser)
    assert [p["name"] for p in panes] == ["lr", "bicubic", "sr"]
    assert (panes[0]["w"], panes[0]["h"]) == (128, 128)
    assert all((p["w"], p["h"]) == (512, 512) for p in panes[1:])
    text = _body(browser)
    assert "treated as the original" in text and "downsampled 4x first" in text
    for expected in ("PSNR dB", "SSIM", "consistency dB", "SR (model)", "bicubic", "Download SR as PNG",
                     "Difference map", "MONOCHROME1"):
        assert expected in text, expected
    figures = [img for img in browser.find_elements(By.CSS_SELECTOR, "[data-testid='stImage'] img")
               if browser.execute_script("return arguments[0].naturalWidth", img) > 0]
    assert len(figures) == 2  # |SR - bicubic| and the blue/red map against the original
    _no_traceback(browser)
    browser.save_screenshot(str(ARTIFACTS / "app_real_xray.png"))
    transforms = _zoom_and_pan(browser)
    assert len(set(transforms)) == 1, f"the panes did not move together: {transforms}"
    browser.save_screenshot(str(ARTIFACTS / "app_real_xray_zoomed.png"))


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("name, content, message", [
    ("notes.png", b"these are my notes, not an image\n" * 10, "could not be read as an X-ray"),
    ("empty.dcm", b"", "is empty"),
    ("huge.png", None, "too large for this demo"),
], ids=["not-an-image", "empty", "huge"])
def test_bad_upload_shows_a_sentence_not_a_traceback(browser, app_url, tmp_path, name, content, message):
    """Bad uploads (not an image, zero bytes, 9000 x 9000 px) end in a readable message in the page."""
    path = tmp_path / name
    path.write_bytes(content if content is not None else _png_bytes(Image.new("L", (9000, 9000))))
    _open(browser, app_url)
    _upload(browser, path)
    _wait_for_text(browser, message)
    _no_traceback(browser)
    assert "Download SR" not in _body(browser)
    browser.save_screenshot(str(ARTIFACTS / f"app_bad_{path.stem}.png"))
