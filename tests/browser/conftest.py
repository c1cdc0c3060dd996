"""A real headless Chromium (Debian's package) driven by Playwright.

`make test` installs chromium when it is missing. Screenshots go to
COMMS_SCREENSHOT_DIR when set (`make screenshots` writes docs/screenshots).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


class WatchedBrowser:
    """The browser, whose pages report Content-Security-Policy violations: Chromium logs
    each one ("Refused to ... because it violates the following Content Security Policy
    directive") to the page's console."""

    def __init__(self, browser):
        self.browser = browser
        self.violations: list[str] = []

    def new_page(self, **options):
        page = self.browser.new_page(**options)
        page.on("console", self._console)
        return page

    def _console(self, message) -> None:
        if "Content Security Policy" in message.text:
            self.violations.append(message.text)


# Module scope: Playwright's sync API runs an event loop in this thread while it is
# open, and the async tests that come after need the thread free again.
@pytest.fixture(scope="module")
def browser():
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    assert executable, "Debian's chromium is missing: `make test` installs it"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                             args=CHROMIUM_ARGS)
        yield WatchedBrowser(browser)
        browser.close()


@pytest.fixture(autouse=True)
def no_csp_violation(browser):
    """Every browser test also checks that its pages broke no rule of the policy."""
    browser.violations.clear()
    yield
    assert not browser.violations, browser.violations


@pytest.fixture
def screenshot_dir(tmp_path: Path) -> Path:
    configured = os.environ.get("COMMS_SCREENSHOT_DIR")
    path = Path(configured) if configured else tmp_path
    path.mkdir(parents=True, exist_ok=True)
    return path
