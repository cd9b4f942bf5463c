"""Makes ``docs/dashboard.png``: the dashboard (``GET /``) of a live run, photographed by Debian's chromium.

Runs, in this process: the exchange simulator for six exchanges, a manager streaming trades, tickers and books
from it, the status service (push every second) and its HTTP server on a free loopback port. Once every
connection is connected and every book live, it injects faults so the page shows a mix of states:

- ``okx``: a 60 s outage (default backoff: the row stays ``reconnecting``, orange);
- ``gate``: a 60 s outage on an entry that gives up after 2 attempts (``error``, red: it needs a restart).

It opens the page in chromium (``/usr/bin/chromium`` through playwright, viewport 1400 x 900 CSS pixels) and,
before the faults, waits until the latency column is filled for all rows but at most one (the keepalive round
trip arrives after the first ping: up to ~30 s on some exchanges; the wait is capped at :data:`LATENCY_WAIT_S`,
then the photograph is taken with what there is). After the faults it waits until the page shows them, checks
that the instances section is hidden (this run has no Redis), and writes the PNG.

``python -m bench.screenshot [--out docs/dashboard.png] [--viewport-only]`` (default: the whole page, 1400 px
wide).

Exit code 0 when the PNG was written; 1 when the run did not reach the expected states in time (nothing
written).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, ViewportSize, async_playwright, expect

from cryptolink.config import StatusConfig
from cryptolink.manager import ExchangeManager
from cryptolink.simulator import Fault, Simulator
from cryptolink.status.app import create_app
from cryptolink.status.server import StatusServer
from cryptolink.status.service import StatusService

__all__ = ["ENTRIES", "main", "shoot"]

log = logging.getLogger("bench.screenshot")

CHROMIUM = "/usr/bin/chromium"
VIEWPORT = ViewportSize(width=1400, height=900)
SETTLE_S = 3.0
"""Seconds between the faults showing and the photograph."""
LATENCY_WAIT_S = 60.0
"""Longest wait for the latency column to fill, s."""

_LATENCY_FILLED = """(missing) => {
  const cells = [...document.querySelectorAll('tr[data-connection] [data-field="latency"]')];
  return cells.length > 0 && cells.filter((c) => c.textContent === "—").length <= missing;
}"""
_LATENCY_COUNT = """() => [...document.querySelectorAll('tr[data-connection] [data-field="latency"]')]
  .map((c) => c.textContent !== "—")"""

ENTRIES: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("binance", "binance", "spot", ("BTC/USDT", "ETH/USDT")),
    ("binanceusdm", "binanceusdm", "perpetual", ("BTC/USDT:USDT",)),
    ("okx", "okx", "spot", ("BTC/USDT",)),
    ("bybit", "bybit", "spot", ("BTC/USDT", "ETH/USDT")),
    ("gate", "gate", "spot", ("BTC/USDT",)),
    ("htx", "htx", "spot", ("BTC/USDT",)),
)
"""``(entry name, exchange, market, symbols)`` of the photographed run."""

GIVES_UP = {"initial_delay_s": 0.2, "max_delay_s": 0.5, "max_attempts": 2}
"""Reconnect policy of ``gate``: marked failed after 2 attempts, so the page shows a red ``error``."""


def _manager(endpoints: dict[str, dict[str, str]]) -> ExchangeManager:
    builder = ExchangeManager.builder().runtime(seed=5)
    for name, exchange, market, symbols in ENTRIES:
        extra: dict[str, Any] = {"reconnect": GIVES_UP} if name == "gate" else {}
        builder.exchange(
            name,
            exchange=exchange,
            market=market,
            symbols=list(symbols),
            ws_url=endpoints[exchange]["ws_url"],
            rest_url=endpoints[exchange]["rest_url"],
            **extra,
        )
    return builder.build()


async def _photograph(
    page: Page, sim: Simulator, url: str, out: Path, *, full_page: bool, ready_s: float
) -> None:
    timeout_ms = ready_s * 1000
    await page.goto(url)
    sections = page.locator("section[data-exchange]")
    await expect(sections).to_have_count(len(ENTRIES), timeout=timeout_ms)
    await expect(page.locator("#healthy")).to_have_attribute("data-healthy", "true", timeout=timeout_ms)
    log.info("every connection connected and every book live; waiting for the latencies")
    await _wait_for_latency(page)
    log.info("injecting faults")
    sim.inject(Fault("outage", duration_s=60.0), exchange="okx")
    sim.inject(Fault("outage", duration_s=60.0), exchange="gate")
    for name, status in (("okx", "reconnecting"), ("gate", "error")):
        section = page.locator(f'section[data-exchange="{name}"]')
        await expect(section.locator('tr[data-status="connected"]')).to_have_count(0, timeout=timeout_ms)
        await expect(section.locator(f'tr[data-status="{status}"]').first).to_be_visible(timeout=timeout_ms)
    await expect(page.locator("#cluster")).to_be_hidden()  # no Redis in this run: no instances section
    await asyncio.sleep(SETTLE_S)  # a few more pushes: retries counted, ages grown
    out.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(out), full_page=full_page)
    log.info("wrote %s", out)


async def _wait_for_latency(page: Page) -> None:
    """Wait (at most :data:`LATENCY_WAIT_S`) until every row but at most one shows a latency; log how many do."""
    with contextlib.suppress(PlaywrightError):  # the cap: photograph what there is (the log says how much)
        await page.wait_for_function(_LATENCY_FILLED, arg=1, timeout=LATENCY_WAIT_S * 1000)
    filled: list[bool] = await page.evaluate(_LATENCY_COUNT)
    log.info("latency shown on %d of %d rows", sum(filled), len(filled))


async def shoot(out: Path, *, full_page: bool = False, ready_s: float = 60.0) -> None:
    """Run the stack, inject the faults and write the screenshot to ``out`` (PNG).

    Args:
        out: where to write the PNG (its directory is created).
        full_page: photograph the whole page, not only the 1400 x 900 viewport.
        ready_s: how long to wait for every connection to be connected, then for the faults to show, s.

    Raises:
        playwright.async_api.Error: chromium could not start, or the page did not reach the expected states
            within ``ready_s`` (the message says which).
    """
    exchanges = sorted({exchange for _, exchange, _, _ in ENTRIES})
    async with Simulator(exchanges=exchanges, speed=1.0, seed=5) as sim:
        manager = _manager(sim.endpoints())
        status = StatusConfig(push_interval_s=1.0, snapshot_interval_s=0.5)
        service = StatusService(manager, status, instance_id="demo-host-1")
        server = StatusServer(create_app(service), "127.0.0.1", 0)
        await service.start()  # first, as cryptolink.service.serve does: it sees the first connects
        await manager.start()
        await server.start()
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
                )
                try:
                    page = await browser.new_page(viewport=VIEWPORT)
                    await _photograph(page, sim, server.url + "/", out, full_page=full_page, ready_s=ready_s)
                finally:
                    await browser.close()
        finally:
            await server.stop()
            await service.stop()
            await asyncio.wait_for(manager.stop(), 15.0)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring); returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("docs/dashboard.png"), help="PNG to write")
    parser.add_argument(
        "--viewport-only", action="store_true", help="only the 1400 x 900 viewport, not the whole page"
    )
    parser.add_argument("--ready-s", type=float, default=60.0, help="wait at most this long per stage, s")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    try:
        asyncio.run(shoot(args.out, full_page=not args.viewport_only, ready_s=args.ready_s))
    except (PlaywrightError, AssertionError) as exc:
        print(f"no screenshot: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
