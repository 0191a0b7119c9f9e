"""Pages checked in headless Chromium (the Debian package, driven by Playwright; never a browser
download). Screenshots go to artifacts/screenshots/ (or $UNLEARNKIT_ARTIFACTS) for people to look at."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

ARTIFACTS = Path(os.environ.get("UNLEARNKIT_ARTIFACTS", Path(__file__).resolve().parents[1] / "artifacts")) / "screenshots"


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("Chromium is not installed: `apt-get install chromium` (.ci/run installs it)")
    return found


@contextmanager
def browser_page(width: int = 1200, height: int = 900):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.route("http*://**", lambda route: route.continue_() if "127.0.0.1" in route.request.url else route.abort())
            yield page
        finally:
            browser.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def images_rendered(page) -> list[int]:
    """The rendered width of every <img> (0 for one that did not load)."""
    return page.eval_on_selector_all("img", "images => images.map(i => i.complete ? i.naturalWidth : 0)")
