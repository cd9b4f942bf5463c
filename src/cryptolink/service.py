"""``cryptolink run CONFIG.yaml``: stream what a config asks for until stopped.

Connects to the addresses the config names (the exchanges' real addresses by default; ``ws_url``/``rest_url``
per entry point it anywhere else, such as ``cryptolink simulate``), writes JSONL when ``output.enabled``, logs
each connection's story (down and why, retrying when, up again, books resynced and why), and prints the
connection report on exit.

Refused at start (exit code 2, nothing left running): an output directory that cannot be written, a symbol
the exchange does not list, a status address that cannot be bound, a Redis URL redis-py cannot use.

The status service always runs (snapshots, the periodic connection report in the log, the Redis status with
``status.redis_url``); ``status.enabled`` (``--no-status``) only decides whether its HTTP API is served; a
failure to stop it is logged and never costs the sinks' close or the report.

Stopped gracefully by every catchable signal that would otherwise end the process
(SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM): connections closed, open gaps published, every
buffered line written, the report printed. A second signal during the stop ends the process at once (exit
code 128 + the signal number). The exit code is 1 when JSONL lines were lost (disk full, I/O errors), 0
otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptolink.config import CryptolinkConfig
from cryptolink.errors import CryptolinkError
from cryptolink.feed import BadSymbol
from cryptolink.logs import log_connection_event
from cryptolink.manager import ExchangeManager
from cryptolink.report import Section, config_summary
from cryptolink.sinks.base import Sink
from cryptolink.sinks.jsonl import JsonlSink, JsonlSinkStats, OutputDirError, jsonl_section
from cryptolink.status.surface import StatusSurface

__all__ = [
    "EXIT_DATA_LOST",
    "EXIT_OK",
    "EXIT_REFUSED",
    "STOP_SIGNALS",
    "RunResult",
    "output_section",
    "run_config",
    "serve",
]

log = logging.getLogger("cryptolink")

EXIT_OK = 0
EXIT_DATA_LOST = 1
EXIT_REFUSED = 2

STOP_SIGNALS: tuple[signal.Signals, ...] = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGALRM,
)
"""Signals that stop the service gracefully (their default action would end the process)."""


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a run ended.

    Attributes:
        report: the final connection report (with the output section when JSONL was written).
        exit_code: :data:`EXIT_OK`, :data:`EXIT_DATA_LOST` or :data:`EXIT_REFUSED`.
        stopped_by: the signal name that stopped the run (``None``: stopped by the caller's event).
        output: the JSONL sink's final counters (``None``: output disabled or refused).
        error: why the run was refused (``None`` otherwise).
    """

    report: str
    exit_code: int
    stopped_by: str | None = None
    output: JsonlSinkStats | None = None
    error: str | None = None


def output_section(stats: JsonlSinkStats, out_dir: object) -> Section:
    """The report section of the JSONL output (see :func:`cryptolink.sinks.jsonl.jsonl_section`)."""
    return jsonl_section(stats, out_dir)


async def serve(
    config: CryptolinkConfig,
    stop: asyncio.Event | None = None,
    *,
    manager: ExchangeManager | None = None,
    sinks: Sequence[Sink] = (),
    on_status: Callable[[StatusSurface], None] | None = None,
) -> RunResult:
    """Run ``config`` until ``stop`` is set or a stop signal arrives; return the final report and exit code.

    Args:
        config: the validated configuration.
        stop: set it to stop the run (the signals in :data:`STOP_SIGNALS` set it too).
        manager: the manager to run (default: one built from ``config``).
        sinks: sinks to run besides the JSONL output the config asks for (any :class:`~cryptolink.sinks.base.Sink`);
            a loss in any of them ends the run with :data:`EXIT_DATA_LOST`.
        on_status: called with the status surface once it started (its ``server`` is ``None`` with
            ``status.enabled: false``; with ``status.port`` 0 ``server.port`` is the port it got).
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    stopped_by: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            log.error("second %s during the stop: exiting now", sig.name)
            os._exit(128 + int(sig))
        stopped_by.append(sig.name)
        log.warning("%s received: stopping (closing connections, writing buffered data)", sig.name)
        stop.set()

    installed: list[signal.Signals] = []
    for sig in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
    try:
        return await _serve(config, stop, manager, stopped_by, list(sinks), on_status)
    finally:
        for sig in installed:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)


async def _serve(
    config: CryptolinkConfig,
    stop: asyncio.Event,
    manager: ExchangeManager | None,
    stopped_by: list[str],
    sinks: list[Sink],
    on_status: Callable[[StatusSurface], None] | None = None,
) -> RunResult:
    log.info("starting:\n%s", config_summary(config))
    out = config.output
    sink: JsonlSink | None = None
    if out.enabled:
        try:
            sink = JsonlSink(
                out.dir,
                flush_interval_s=out.flush_interval_s,
                max_file_bytes=out.max_file_bytes,
                rotate_interval_s=out.rotate_interval_s,
                max_files=out.max_files,
                max_total_bytes=out.max_total_bytes,
            )
        except OutputDirError as exc:
            log.error("refusing to start: %s", exc)
            return RunResult("", EXIT_REFUSED, error=str(exc))
    manager = manager or ExchangeManager(config)
    manager.add_event_listener(log_connection_event)  # every connection event as a structured log record
    # always: the report and the Redis status run without the HTTP API too (status.enabled: false)
    status = StatusSurface(
        manager, config.status, disk_path=out.dir if out.enabled else ".", serve_http=config.status.enabled
    )
    try:
        await status.start()
    except (CryptolinkError, ValueError) as exc:  # StatusBindError; a Redis URL redis-py refuses
        log.error("refusing to start: %s", exc)
        await _stop_status(status)
        manager.remove_event_listener(log_connection_event)
        if sink is not None:
            await sink.aclose()
        return RunResult("", EXIT_REFUSED, error=str(exc))
    if on_status is not None:
        try:
            on_status(status)
        except Exception:  # the caller's callback: its failure must not leave the surface running unattended
            log.exception("the on_status callback failed; going on")
    if sink is not None:
        sinks.insert(0, sink)
    tasks: list[asyncio.Task[None]] = []
    failed: list[str] = []  # sinks whose run() or aclose() raised: the run ends with exit code 1

    def on_sink_done(task: asyncio.Task[None], name: str) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
            log.error("%s sink failed; its events are no longer delivered", name, exc_info=exc)

    for each in sinks:
        each.attach(manager.bus)
        task = asyncio.create_task(each.run())
        task.add_done_callback(functools.partial(on_sink_done, name=type(each).__name__))
        tasks.append(task)
    try:
        try:
            await manager.start()
        except BadSymbol as exc:
            log.error("refusing to start: %s", exc)
            return RunResult("", EXIT_REFUSED, error=str(exc))
        await stop.wait()
    finally:
        await manager.stop()
        manager.remove_event_listener(log_connection_event)  # after the stop: its events are logged too
        await _stop_status(status)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for each in sinks:
            try:
                await each.aclose()
            except Exception as exc:  # one sink's failure must not keep the others from closing
                failed.append(f"{type(each).__name__} close: {type(exc).__name__}: {exc}")
                log.error("%s sink: closing failed", type(each).__name__, exc_info=exc)
    extra = [each.report_section() for each in sinks]
    if failed:
        extra.append(Section("sink failures", [f"  {f}" for f in failed]))
    report = manager.report(extra)
    lost = [h for h in (each.health() for each in sinks) if h.data_lost]
    for h in lost:
        log.error(
            "%s sink: %d events lost%s (see the report): exit code 1",
            h.name,
            h.lost,
            "" if h.healthy else f", failing: {h.last_error or '-'}",
        )
    return RunResult(
        report,
        EXIT_DATA_LOST if lost or failed else EXIT_OK,
        stopped_by[0] if stopped_by else None,
        sink.stats() if sink is not None else None,
    )


async def _stop_status(status: StatusSurface) -> None:
    """Stop the status surface; a failure is logged and never keeps the sinks from closing or the report from
    being written."""
    try:
        await status.stop()
    except Exception:
        log.exception("stopping the status service failed; going on with the stop")


def run_config(config: CryptolinkConfig) -> int:
    """Entry point of ``cryptolink run`` (blocking until stopped); prints the report; returns the exit code."""
    result = asyncio.run(serve(config))
    if result.error is not None:
        print(f"error: {result.error}", file=sys.stderr, flush=True)
    if result.report:
        print(result.report, flush=True)
    return result.exit_code
