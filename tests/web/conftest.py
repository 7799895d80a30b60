"""The stack as real processes and one headless Chromium (Debian's) for the whole session.

Every page a test opens fails the test if it requests anything off 127.0.0.1 or logs a
console error; screenshots go to ``tests/web/screenshots/`` (git-ignored).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, sync_playwright

from testbed.processes import Stack, start_stack

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = Path(__file__).parent / "screenshots"
RETENTION_DAYS = "5"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture(scope="session")
def web_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(
        tmp_path_factory.mktemp("web"),
        workers=1,
        gateway_env={"ANONYMOUS_RETENTION_DAYS": RETENTION_DAYS, "RATE_LIMIT_AI": "100/minute"},
    )
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Watch:
    """What a page did that a user would never want: leave loopback, or log errors."""

    foreign: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert self.foreign == [], f"requests left 127.0.0.1: {self.foreign}"
        assert self.console_errors == [], f"console errors: {self.console_errors}"


def guarded_context(browser: Browser, watch: Watch, **options: object) -> BrowserContext:
    context = browser.new_context(**options)  # type: ignore[arg-type]

    def only_loopback(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            watch.foreign.append(route.request.url)
            route.abort()

    context.route("**/*", only_loopback)
    return context


def watched(page: Page, watch: Watch, expected_errors: tuple[str, ...] = ()) -> Page:
    def on_console(message: object) -> None:
        if message.type == "error":  # type: ignore[attr-defined]
            text = message.text  # type: ignore[attr-defined]
            # A refused snap is an HTTP error the page answers itself; Chromium still
            # logs the failed resource, which is the expected status, not a page error.
            if not any(part in text for part in expected_errors):
                watch.console_errors.append(text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: watch.console_errors.append(str(error)))
    return page


@pytest.fixture
def watch() -> Iterator[Watch]:
    found = Watch()
    yield found
    found.assert_clean()


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
