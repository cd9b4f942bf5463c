"""A real browser for the dashboard tests: Debian's chromium (``/usr/bin/chromium``) driven by playwright.

The browser is never downloaded (``playwright install`` is not used): a machine without chromium fails the test
with the reason, it does not skip it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import ConsoleMessage, Error, Page, async_playwright

__all__ = ["CHROMIUM", "BrowserPage", "browser_page", "require_chromium"]

CHROMIUM = Path("/usr/bin/chromium")
"""The system browser the tests drive (Debian package ``chromium``)."""


@dataclass
class BrowserPage:
    """An open page and what went wrong in it.

    Attributes:
        page: the playwright page.
        errors: uncaught script errors, in order (a test asserts it stays empty).
        console_errors: the console's error lines (a refused WebSocket handshake logs one there).
    """

    page: Page
    errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)


def require_chromium() -> None:
    """Fail the calling test, with the reason, when :data:`CHROMIUM` is missing."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the dashboard tests drive the system chromium "
            "(Debian: apt-get install chromium); playwright's own browser download is not used"
        )


@contextlib.asynccontextmanager
async def browser_page(width: int = 1280, height: int = 800) -> AsyncIterator[BrowserPage]:
    """A fresh headless chromium page with a ``width`` x ``height`` CSS-pixel viewport; closed on exit.

    Fails the test (never skips it) when :data:`CHROMIUM` is missing.
    """
    require_chromium()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            page = await browser.new_page(viewport={"width": width, "height": height})
            out = BrowserPage(page)

            def on_console(msg: ConsoleMessage) -> None:
                if msg.type == "error":
                    out.console_errors.append(msg.text)

            def on_page_error(exc: Error) -> None:
                out.errors.append(f"{exc.name}: {exc.message}")

            page.on("console", on_console)
            page.on("pageerror", on_page_error)
            yield out
        finally:
            await browser.close()
