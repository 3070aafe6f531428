"""Screenshots of the labeling page (for the README tutorial) through headless Chromium.

Uses Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver) and the
selenium package; selenium's own driver manager is never asked to download anything.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from tavaal.errors import LabelingError
from tavaal.labeling.page import LabelingServer

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def chromium_missing() -> str | None:
    """Why headless Chromium cannot be driven here, or None when it can."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if shutil.which(path) is None:
            return f"{path} not found (apt-get install {package})"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed (pip install 'selenium>=4.20')"
    return None


def headless_chromium(width: int, height: int):
    """A selenium WebDriver of headless Chromium whose viewport is exactly width x height."""
    reason = chromium_missing()
    if reason is not None:
        raise LabelingError(f"cannot drive headless Chromium: {reason}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # Selenium Manager would look for (and try to download) a browser; the paths are given.
    os.environ.setdefault("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    # The window size includes no toolbar in headless mode, but pin the viewport exactly so
    # screenshots have the requested size whatever the Chromium version does.
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    return driver


def wait_for_page(driver, timeout: float = 10.0) -> None:
    """Wait until the page has loaded its batch, saved every change and shown its images."""
    script = (
        "return document.body.dataset.ready === '1' && document.body.dataset.pending === '0'"
        " && Array.from(document.images).every(img => img.complete)"
    )
    deadline = time.monotonic() + timeout
    while not driver.execute_script(script):
        if time.monotonic() > deadline:
            raise LabelingError(f"the labeling page did not settle within {timeout:g} s")
        time.sleep(0.05)


def screenshot_page(
    request_json: Path | str,
    out_png: Path | str,
    keys: str = "",
    width: int = 1100,
    height: int = 800,
) -> None:
    """Save a width x height PNG of the labeling page of a request, after typing `keys`.

    `keys` may hold selenium's special keys (selenium.webdriver.common.keys.Keys.ARROW_RIGHT,
    ...). Typed labels are saved to the request's labels file, as on the real page.
    """
    server = LabelingServer(request_json, port=0)
    server.start()
    try:
        driver = headless_chromium(width, height)
        from selenium.webdriver.common.action_chains import ActionChains

        try:
            driver.get(server.url)
            wait_for_page(driver)
            if keys:
                ActionChains(driver).send_keys(keys).perform()
                wait_for_page(driver)
            out_png = Path(out_png)
            out_png.parent.mkdir(parents=True, exist_ok=True)
            if not driver.save_screenshot(str(out_png)):
                raise LabelingError(f"{out_png}: Chromium could not save the screenshot")
        finally:
            driver.quit()
    finally:
        server.stop()
