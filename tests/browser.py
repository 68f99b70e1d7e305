"""Headless Chromium from the machine (Debian ``chromium``) driven by Playwright; no download."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

# Flags from the machine notes: no sandbox as root, and no background traffic to Google's hosts
# (the network is closed; those connections would only slow start-up down).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def chromium_path() -> str:
    """The system Chromium; ``./run test`` installs it (apt) when it is missing."""
    path = os.environ.get("B24APP_CHROMIUM") or shutil.which("chromium") or shutil.which(
        "chromium-browser")
    if not path:
        pytest.fail("Chromium is not installed: run `apt-get install chromium` "
                    "(./run test does it) or set B24APP_CHROMIUM")
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the session."""
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                              args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page that may reach no real host (every request must be routed by the test)."""
    context = browser.new_context()
    page = context.new_page()
    page.route("**/*", lambda route: route.abort())
    try:
        yield page
    finally:
        context.close()
