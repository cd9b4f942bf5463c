"""A real browser for the dashboard tests: Debian's chromium (``/usr/bin/chromium``) driven by playwright.

The browser is never downloaded (``playwright install`` is not used): a machine without chromium fails the test
with the reason, it does not skip it.

:class:`ScriptedService` serves the packaged dashboard page from a made-up origin with a scripted WebSocket
(playwright's WebSocket routing) and scripted ``api/cluster/status`` and ``healthz`` answers: no status service
runs, so a test chooses every value the page shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import ConsoleMessage, Error, Page, Route, WebSocketRoute, async_playwright

__all__ = [
    "CHROMIUM",
    "NO_REDIS",
    "ORIGIN",
    "BrowserPage",
    "ScriptedService",
    "browser_page",
    "push",
    "require_chromium",
]

CHROMIUM = Path("/usr/bin/chromium")
"""The system browser the tests drive (Debian package ``chromium``)."""

ORIGIN = "http://dashboard.test"
"""The made-up origin :class:`ScriptedService` serves the page from (never resolved: playwright answers)."""

NO_REDIS: dict[str, Any] = {"redis": None, "instances": [], "detail": "status.redis_url is not set"}
"""``api/cluster/status`` of a service without Redis (what the real one answers)."""


@dataclass
class BrowserPage:
    """An open page and what went wrong in it.

    Attributes:
        page: the playwright page.
        errors: uncaught script errors, in order (a test asserts it stays empty).
        console_errors: the console's error lines (a refused WebSocket handshake or an HTTP error answer to a
            fetch logs one there).
    """

    page: Page
    errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def assert_clean(self, *expected: str) -> None:
        """Assert no uncaught script error and no console error except those matching one of the ``expected``
        regular expressions (searched in each line)."""
        assert self.errors == []
        unexpected = [e for e in self.console_errors if not any(re.search(p, e) for p in expected)]
        assert unexpected == []


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


def push(data: dict[str, Any]) -> str:
    """A ``/ws/status`` message carrying ``data`` (the shape of ``documents.push_message``)."""
    return json.dumps({"type": "exchange_status", "id": "exchange_status_1", "timestamp": 1, "data": data})


@dataclass
class ScriptedService:
    """The packaged page at ``ORIGIN + path`` with every request it makes answered by the test.

    Attributes:
        page: the playwright page.
        path: where the page is served (a directory path ending in ``/``; ``/`` or a proxy's sub-path).
        greeting: messages sent on every socket the page opens, as soon as it opens (a real service sends the
            latest status at once).
        cluster: ``(HTTP status, JSON body)`` answered to ``api/cluster/status`` (changeable at any time).
        healthz: HTTP status answered to ``healthz``.
        sockets: every socket the page opened, oldest first; :meth:`send` talks on the newest.
        opened: each socket as it opens (wait on it with ``asyncio.wait_for``).
        cluster_reads: ``(path, Authorization header)`` of every ``api/cluster/status`` request.
        cluster_read: set at every ``api/cluster/status`` request (clear it, then wait for the next one).
    """

    page: Page
    path: str = "/"
    greeting: list[str] = field(default_factory=list)
    cluster: tuple[int, dict[str, Any]] = (200, NO_REDIS)
    healthz: int = 200
    sockets: list[WebSocketRoute] = field(default_factory=list)
    opened: asyncio.Queue[WebSocketRoute] = field(default_factory=asyncio.Queue)
    cluster_reads: list[tuple[str, str | None]] = field(default_factory=list)
    cluster_read: asyncio.Event = field(default_factory=asyncio.Event)

    async def open(self, query: str = "") -> None:
        """Route the origin and open ``ORIGIN + path + query`` (``query`` with its ``?``)."""
        html = resources.files("cryptolink.status").joinpath("static/index.html").read_text(encoding="utf-8")

        async def answer(route: Route) -> None:
            path = urlsplit(route.request.url).path
            if path == self.path:
                await route.fulfill(status=200, content_type="text/html", body=html)
            elif path == self.path + "api/cluster/status":
                self.cluster_reads.append((path, await route.request.header_value("authorization")))
                self.cluster_read.set()
                status, body = self.cluster
                await route.fulfill(status=status, content_type="application/json", body=json.dumps(body))
            elif path == self.path + "healthz":
                await route.fulfill(status=self.healthz, content_type="application/json", body="{}")
            else:
                await route.fulfill(status=404, content_type="application/json", body="{}")

        def on_socket(ws: WebSocketRoute) -> None:
            self.sockets.append(ws)
            for message in self.greeting:
                ws.send(message)
            self.opened.put_nowait(ws)

        await self.page.route(ORIGIN + "/**", answer)
        await self.page.route_web_socket(
            re.compile("^" + re.escape(ORIGIN.replace("http", "ws", 1))), on_socket
        )
        await self.page.goto(ORIGIN + self.path + query)

    def send(self, *messages: str) -> None:
        """Send ``messages`` on the newest socket."""
        for message in messages:
            self.sockets[-1].send(message)

    def urls(self) -> Iterable[str]:
        """The URL of every socket the page opened, oldest first."""
        return [ws.url for ws in self.sockets]
