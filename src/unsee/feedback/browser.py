"""Drive the labelling page in a real headless Chromium (tests, `unsee bench label`).

Uses Selenium with Debian's chromium and chromium-driver (apt-get install chromium
chromium-driver); nothing is downloaded.
"""

import shutil
import tempfile
from pathlib import Path

from unsee.errors import UnseeError

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,900",
]


def find_chromium() -> tuple[str, str] | None:
    """(browser, driver) paths, or None when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def open_browser():
    """A Selenium WebDriver on headless Chromium; close it with .quit()."""
    found = find_chromium()
    if found is None:
        raise UnseeError(
            "needs chromium and chromedriver: apt-get install chromium chromium-driver"
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise UnseeError("needs selenium: pip install selenium") from None
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='unsee-chromium-')}")
    return webdriver.Chrome(service=Service(found[1]), options=options)


def press(driver, keys: str) -> None:
    """Type keys into the page (one key event each)."""
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(keys).perform()


def wait_for(driver, script: str, timeout: float = 20.0):
    """Wait until the JavaScript expression is truthy; return its value."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.02).until(
        lambda d: d.execute_script("return " + script)
    )


def screenshot(driver, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    return path
