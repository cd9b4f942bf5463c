"""``cryptolink run CONFIG.yaml``: stream what a config asks for until stopped.

Connects to the addresses the config names (the exchanges' real addresses by default; ``ws_url``/``rest_url``
per entry point it anywhere else, such as ``cryptolink simulate``), writes JSONL when ``output.enabled``, logs every
connection event of severity WARNING or worse, and prints the connection report on exit (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from cryptolink.config import CryptolinkConfig
from cryptolink.engine import ConnectionEvent, Severity
from cryptolink.manager import ExchangeManager
from cryptolink.report import config_summary
from cryptolink.sinks.jsonl import JsonlSink

__all__ = ["run_config", "serve"]

log = logging.getLogger("cryptolink")


def _log_event(event: object) -> None:
    if isinstance(event, ConnectionEvent) and event.severity >= Severity.WARNING:
        log.warning(
            "%s %s: %s%s",
            event.connection_id,
            event.type.value,
            event.description,
            f" ({event.error})" if event.error else "",
        )


async def serve(config: CryptolinkConfig, stop: asyncio.Event | None = None) -> str:
    """Run ``config`` until ``stop`` is set (default: SIGINT/SIGTERM); returns the final connection report."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    log.info("starting:\n%s", config_summary(config))
    manager = ExchangeManager(config)
    manager.on("events", _log_event)
    sink: JsonlSink | None = None
    sink_task: asyncio.Task[None] | None = None
    if config.output.enabled:
        sink = JsonlSink(config.output.dir, flush_interval_s=config.output.flush_interval_s)
        sink.attach(manager.bus)
        sink_task = asyncio.create_task(sink.run())
    await manager.start()
    report = ""
    try:
        await stop.wait()
    finally:
        report = manager.report()
        await manager.stop()
        if sink_task is not None:
            sink_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sink_task
        if sink is not None:
            sink.close()
    return report


def run_config(config: CryptolinkConfig) -> int:
    """Entry point of ``cryptolink run`` (blocking until Ctrl-C/SIGTERM); prints the report; returns 0."""

    print(asyncio.run(serve(config)), flush=True)
    return 0
