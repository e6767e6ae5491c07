"""Headless Chromium for the browser tests: Debian's ``chromium`` + ``chromium-driver``, driven by selenium.

No browser is downloaded: the Debian packages are installed with apt-get when missing (CI runs
on a fresh machine), and selenium talks to ``/usr/bin/chromedriver``. If they cannot be
installed the test fails, saying so: a skipped browser test would hide a broken view.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,1000",
)
APT_TIMEOUT = 900


def ensure_chromium() -> None:
    """Install Debian's chromium and chromium-driver if they are missing; fail clearly if that fails."""
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    if shutil.which("apt-get") is None:
        pytest.fail(f"{CHROMIUM} / {CHROMEDRIVER} are missing and there is no apt-get to install them.")
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT, check=False)
        if done.returncode != 0:
            pytest.fail(
                f"Could not install the browser for the UI tests ({' '.join(argv)} exited {done.returncode}):\n"
                f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
            )
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(f"apt-get installed chromium, but {CHROMIUM} or {CHROMEDRIVER} is still missing.")


@contextlib.contextmanager
def chromium() -> Iterator[WebDriver]:
    """A fresh headless Chromium (own profile directory), quit and removed at the end."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    ensure_chromium()
    profile = tempfile.mkdtemp(prefix="kontext-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def log_in(driver: WebDriver, base_url: str, token: str) -> None:
    """Hold the UI's session cookie (``_token``), as Airflow's login sets it (httpOnly, path ``/``)."""
    driver.get(f"{base_url}/api/v2/monitor/health")  # any page of the origin, to set its cookie
    driver.add_cookie({"name": "_token", "value": token, "path": "/", "httpOnly": True, "sameSite": "Lax"})


def wait_until(what: str, timeout: float, probe: Any, *, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def loaded_images(driver: WebDriver, *, timeout: float = 30.0) -> list[dict[str, Any]]:
    """
    Every ``<img>`` of the current document, once each has finished loading (or failing).

    Each is scrolled into view first, so ``loading="lazy"`` images load too. Returns ``src``,
    ``naturalWidth`` and ``alt`` per image.
    """
    driver.execute_script("for (const img of document.images) img.scrollIntoView();")
    for index in range(len(driver.find_elements("tag name", "img"))):
        wait_until(
            f"image {index} to finish loading",
            timeout,
            lambda i=index: driver.execute_script(
                "const img = document.images[arguments[0]]; img.scrollIntoView(); return img.complete;", i
            ),
        )
    driver.execute_script("window.scrollTo(0, 0);")
    images: list[dict[str, Any]] = driver.execute_script(
        "return [...document.images].map(i => ({src: i.currentSrc || i.src, naturalWidth: i.naturalWidth, alt: i.alt}))"
    )
    return images
