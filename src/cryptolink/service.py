"""``cryptolink run CONFIG.yaml``: stream what a config asks for until stopped.

Connects to the addresses the config names (the exchanges' real addresses by default; ``ws_url``/``rest_url``
per entry point it anywhere else, such as ``cryptolink simulate``), writes JSONL when ``output.enabled``, logs
each connection's story (down and why, retrying when, up again, books resynced and why), and prints the
connection report on exit.

Refused at start (exit code 2, nothing left running): an output directory that cannot be written, a symbol
the exchange does not list, a status address that cannot be bound, a Redis URL redis-py cannot use, and with a
``nats:`` section, no NATS server answering (``nats.require_at_start``) or a JetStream stream that differs from
``nats.stream``.

With a ``nats:`` section every event is also published to NATS JetStream (:mod:`cryptolink.sinks.nats`,
``docs/nats.md``); with ``nats.cluster.enabled`` the process is a worker that runs only the shards whose leases
it holds (:mod:`cryptolink.cluster`, ``docs/cluster.md``).

The status service always runs (snapshots, the periodic connection report in the log, the Redis status with
``status.redis_url``); ``status.enabled`` (``--no-status``) only decides whether its HTTP API is served; a
failure to stop it is logged and never costs the sinks' close or the report.

Reloaded by SIGHUP when the run has a configuration file (``cryptolink run`` always has one), and with
``--watch`` whenever the file changes (polled every second, reloaded once stable for a second): exchange entries
added, removed or changed, streams subscribed or unsubscribed, without touching the connections of entries that
did not change; a file with errors is refused (every error logged) and the running configuration stays
(:mod:`cryptolink.reload`, ``docs/reload.md``). Settings read only at start (``status``, ``output``, log level,
queue sizes) are named in a warning and applied at the next start.

Stopped gracefully by every other catchable signal that would otherwise end the process (SIGINT, SIGTERM,
SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM; SIGHUP too when there is no file to reload): connections closed, open gaps
published, every buffered line written, the report printed. A second stop signal during the stop ends the
process at once (exit code 128 + the signal number); a SIGHUP during the stop is ignored (logged). The exit code
is 1 when JSONL lines were lost (disk full, I/O errors) or events could not be published to NATS, 0 otherwise.
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
from pathlib import Path
from typing import TYPE_CHECKING

from cryptolink.clock import SystemClock
from cryptolink.config import CryptolinkConfig
from cryptolink.errors import CryptolinkError
from cryptolink.feed import BadSymbol
from cryptolink.logs import log_connection_event
from cryptolink.manager import ExchangeManager
from cryptolink.reload import (
    DEFAULT_WATCH_INTERVAL_S,
    ConfigReloader,
    ReloadOptions,
    ReloadOutcome,
    ReloadStats,
    reload_section,
)
from cryptolink.report import Section, config_summary
from cryptolink.rest.budget import RateBudgets
from cryptolink.rest.manager import RestManager
from cryptolink.rest.stats import report_section as rest_report_section
from cryptolink.sinks.base import Sink
from cryptolink.sinks.jsonl import JsonlSink, JsonlSinkStats, OutputDirError, jsonl_section
from cryptolink.status.surface import StatusSurface

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient

    from cryptolink.cluster.worker import Worker, WorkerStatus
    from cryptolink.sinks.nats import NatsSink

__all__ = [
    "EXIT_DATA_LOST",
    "EXIT_OK",
    "EXIT_REFUSED",
    "RELOAD_SIGNAL",
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
"""Signals that stop the service gracefully (their default action would end the process); :data:`RELOAD_SIGNAL`
reloads instead when the run has a configuration file."""

RELOAD_SIGNAL = signal.SIGHUP
"""The signal that reloads the configuration file (:mod:`cryptolink.reload`) when the run has one."""


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a run ended.

    Attributes:
        report: the final connection report (with the output section when JSONL was written).
        exit_code: :data:`EXIT_OK`, :data:`EXIT_DATA_LOST` or :data:`EXIT_REFUSED`.
        stopped_by: the signal name that stopped the run (``None``: stopped by the caller's event).
        output: the JSONL sink's final counters (``None``: output disabled or refused).
        error: why the run was refused (``None`` otherwise).
        reloads: the reloads' counters (``None``: the run had no configuration file to reload, or was refused).
    """

    report: str
    exit_code: int
    stopped_by: str | None = None
    output: JsonlSinkStats | None = None
    error: str | None = None
    reloads: ReloadStats | None = None


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
    reload: ReloadOptions | None = None,
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
        reload: the configuration file SIGHUP reloads (and ``--watch``); ``None``: SIGHUP stops the run like
            the other signals of :data:`STOP_SIGNALS`.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    stopped_by: list[str] = []
    # one set of rate budgets for the engine's snapshots and backfills and the REST manager's members
    budgets = (
        manager.rest_budgets
        if manager is not None
        else RateBudgets.from_config(config.rest.limits, SystemClock())
    )
    worker_mode = config.nats is not None and config.nats.cluster.enabled
    if manager is None:
        if worker_mode:
            # a worker's manager runs only the shards it holds
            from cryptolink.cluster.worker import idle_config

            manager = ExchangeManager(idle_config(config), rest_budgets=budgets)
        else:
            manager = ExchangeManager(config, rest_budgets=budgets)
    rest = RestManager(config.rest, budgets=budgets)
    reloader: ConfigReloader | None = None
    ignore_reload = worker_mode and reload is not None
    if ignore_reload:
        log.warning(
            "a cluster worker does not reload its configuration (every worker must run the same one): SIGHUP "
            "and --watch are ignored; restart the workers one by one to change it"
        )
    elif reload is not None:
        reloader = ConfigReloader(
            config,
            manager,
            path=reload.path,
            file_config=reload.file_config,
            env=reload.env,
            clock=reload.clock,
            rest=rest,
        )
        if reload.on_reload is not None:
            reloader.add_listener(reload.on_reload)

    def on_signal(sig: signal.Signals) -> None:
        if sig is RELOAD_SIGNAL and ignore_reload:
            log.warning("%s received: ignored (a cluster worker does not reload its configuration)", sig.name)
            return
        if sig is RELOAD_SIGNAL and reloader is not None:
            if stop.is_set():
                reloader.close()  # the request below is counted as ignored
            else:
                log.info("%s received: reloading %s", sig.name, reloader.path)
            reloader.request(sig.name)
            return
        if stop.is_set():
            log.error("second %s during the stop: exiting now", sig.name)
            os._exit(128 + int(sig))
        stopped_by.append(sig.name)
        log.warning("%s received: stopping (closing connections, writing buffered data)", sig.name)
        if reloader is not None:
            reloader.close()
        stop.set()

    installed: list[signal.Signals] = []
    for sig in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
    try:
        return await _serve(
            config,
            stop,
            manager,
            stopped_by,
            list(sinks),
            on_status,
            reloader,
            reload.watch_interval_s if reload is not None and not ignore_reload else None,
            rest,
        )
    finally:
        try:
            await rest.close()
        finally:
            await budgets.aclose()
        for sig in installed:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)


async def _serve(
    config: CryptolinkConfig,
    stop: asyncio.Event,
    manager: ExchangeManager,
    stopped_by: list[str],
    sinks: list[Sink],
    on_status: Callable[[StatusSurface], None] | None = None,
    reloader: ConfigReloader | None = None,
    watch_interval_s: float | None = None,
    rest: RestManager | None = None,
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
    manager.add_event_listener(log_connection_event)  # every connection event as a structured log record
    nats_sink = _nats_sink(config, manager)
    worker: Worker | None = None
    worker_nc: NatsClient | None = None
    if config.nats is not None and config.nats.cluster.enabled:
        try:
            worker, worker_nc = await _worker(config, manager)
        except CryptolinkError as exc:  # NatsUnavailable: no NATS server answers; ConfigError
            log.error("refusing to start: %s", exc)
            manager.remove_event_listener(log_connection_event)
            if sink is not None:
                await sink.aclose()
            return RunResult("", EXIT_REFUSED, error=str(exc))
    # always: the report and the Redis status run without the HTTP API too (status.enabled: false)
    status = StatusSurface(
        manager,
        config.status,
        disk_path=out.dir if out.enabled else ".",
        serve_http=config.status.enabled,
        rest=rest.stats if rest is not None else None,
        budgets=manager.rest_budgets.stats,
        nats=nats_sink.stats if nats_sink is not None else None,
        worker=worker.status if worker is not None else None,
    )
    try:
        if rest is not None:
            await rest.start()  # ConfigError: a member's exchange unknown to ccxt
        await status.start()
        if nats_sink is not None:
            await nats_sink.start()  # NatsError: no server answers (require_at_start), the stream differs
    except (CryptolinkError, ValueError) as exc:  # StatusBindError; a Redis URL redis-py refuses
        log.error("refusing to start: %s", exc)
        await _stop_status(status)
        manager.remove_event_listener(log_connection_event)
        if sink is not None:
            await sink.aclose()
        if nats_sink is not None:
            await nats_sink.aclose()
        if worker_nc is not None:
            await _close_nats(worker_nc)
        return RunResult("", EXIT_REFUSED, error=str(exc))
    if on_status is not None:
        try:
            on_status(status)
        except Exception:  # the caller's callback: its failure must not leave the surface running unattended
            log.exception("the on_status callback failed; going on")
    if reloader is not None:
        reloader.add_listener(functools.partial(_follow_reload, status, reloader))
    if nats_sink is not None:
        sinks.insert(0, nats_sink)
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
    watcher: asyncio.Task[None] | None = None
    worker_task: asyncio.Task[None] | None = None
    try:
        try:
            await manager.start()
            if worker is not None:
                await worker.start()  # ClusterError: the lease bucket cannot serve leases
                worker_task = asyncio.create_task(worker.run(), name="cluster-worker")
                worker_task.add_done_callback(_on_worker_done)
        except (BadSymbol, CryptolinkError) as exc:
            log.error("refusing to start: %s", exc)
            return RunResult("", EXIT_REFUSED, error=str(exc))
        if reloader is not None:
            reloader.start()  # a SIGHUP received while starting is applied now
            if watch_interval_s is not None:
                watcher = asyncio.create_task(reloader.watch(watch_interval_s), name="config-watch")
                watcher.add_done_callback(_on_watch_done)
                log.info("watching %s for changes (every %g s)", reloader.path, watch_interval_s)
        await stop.wait()
    finally:
        if worker is not None:
            try:  # releases every lease and stops its shards (each kept until its new holder runs it)
                await worker.aclose()
            except Exception:
                log.exception("closing the cluster worker failed; going on with the stop")
            if worker_task is not None:
                worker_task.cancel()
                await asyncio.gather(worker_task, return_exceptions=True)
            if worker_nc is not None:
                await _close_nats(worker_nc)
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        if reloader is not None:
            await reloader.aclose()  # a reload in progress is cut short: the manager's stop closes it all
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
    if worker is not None:
        extra.append(worker_section(worker.status()))
    if rest is not None and (rest_stats := rest.stats()).members:
        extra.append(rest_report_section(rest_stats))
    reloads = reloader.stats() if reloader is not None else None
    if reloads is not None and (reloads.requests or reloads.applied or reloads.refused):
        extra.append(reload_section(reloads))
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
        reloads=reloads,
    )


def _nats_sink(config: CryptolinkConfig, manager: ExchangeManager) -> NatsSink | None:
    """The NATS sink of the ``nats:`` section (``None`` without one); its periodic and after-loss snapshots read
    the manager's live books."""
    if config.nats is None:
        return None
    from cryptolink.sinks.nats import NatsSink  # nats-py only when the config asks for NATS
    from cryptolink.status.service import default_instance_id

    instance = config.status.instance_id or default_instance_id()
    return NatsSink(config.nats, book_source=manager.book, instance=instance)


async def _worker(config: CryptolinkConfig, manager: ExchangeManager) -> tuple[Worker, NatsClient]:
    """The scale-out worker of ``nats.cluster`` on a NATS connection of its own (the sink's carries the data).

    Raises:
        NatsUnavailable: no NATS server answered within ``nats.connect_timeout_s`` (x2).
    """
    from cryptolink.cluster.worker import Worker, default_worker_id
    from cryptolink.consumer.reader import NatsCredentials, connect_nats

    nats_cfg = config.nats
    assert nats_cfg is not None
    worker_id = nats_cfg.cluster.worker_id or default_worker_id()
    nc = await connect_nats(
        nats_cfg.servers,
        NatsCredentials.from_config(nats_cfg),
        connect_timeout_s=nats_cfg.connect_timeout_s,
        start_timeout_s=2 * nats_cfg.connect_timeout_s,
        reconnect_wait_s=nats_cfg.reconnect_wait_s,
        name=f"cryptolink-worker-{worker_id}",
    )
    try:
        return Worker(config, manager, nc=nc), nc
    except Exception:
        await _close_nats(nc)
        raise


async def _close_nats(nc: NatsClient) -> None:
    try:
        await asyncio.wait_for(nc.close(), 5.0)
    except Exception:
        log.exception("closing the worker's NATS connection failed")


def _on_worker_done(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("the cluster worker stopped; it holds no shard any more", exc_info=exc)


def worker_section(status: WorkerStatus) -> Section:
    """The report section of a cluster worker: who it was, what it held at the end, its lease counters."""
    held = ", ".join(f"{h.shard}#{h.replica}" for h in status.held) or "none"
    return Section(
        "cluster worker",
        [
            f"  {status.worker_id} ({status.state}); {len(status.workers_seen)} workers seen; "
            f"target {status.target} of {status.slots} slots; held at the end: {held}",
            f"  leases: {status.leases_acquired} acquired, {status.leases_renewed} renewed, "
            f"{status.leases_lost} lost ({status.self_fences} self-fenced), {status.leases_released} released; "
            f"{status.renew_failures} renew failures; handovers {status.handovers} "
            f"({status.handovers_completed} completed, {status.handover_timeouts} timed out)",
            *(
                [f"  WORKERS WITH ANOTHER CONFIGURATION: {', '.join(status.config_mismatch)}"]
                if status.config_mismatch
                else []
            ),
        ],
    )


def _follow_reload(status: StatusSurface, reloader: ConfigReloader, outcome: ReloadOutcome) -> None:
    """After an applied reload the status judges the entries the new configuration enables (an entry removed is
    no longer reported as missing; one that could not start is)."""
    if outcome.applied:
        status.service.enabled = tuple(reloader.config.enabled_exchanges())


def _on_watch_done(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("the configuration watcher failed; the file is no longer watched", exc_info=exc)


async def _stop_status(status: StatusSurface) -> None:
    """Stop the status surface; a failure is logged and never keeps the sinks from closing or the report from
    being written."""
    try:
        await status.stop()
    except Exception:
        log.exception("stopping the status service failed; going on with the stop")


def run_config(
    config: CryptolinkConfig,
    *,
    path: str | os.PathLike[str] | None = None,
    watch: bool = False,
    file_config: CryptolinkConfig | None = None,
) -> int:
    """Entry point of ``cryptolink run`` (blocking until stopped); prints the report; returns the exit code.

    Args:
        config: the configuration to run (command-line options applied).
        path: its file: SIGHUP reloads it (``None``: SIGHUP stops the run).
        watch: also reload the file when it changes (polled every :data:`~cryptolink.reload.DEFAULT_WATCH_INTERVAL_S`
            s); needs ``path``.
        file_config: ``config`` as the file gave it, before command-line options (see
            :class:`~cryptolink.reload.ReloadOptions`).

    Raises:
        ValueError: ``watch`` without ``path``.
    """
    if watch and path is None:
        raise ValueError("watch needs the configuration file's path")
    reload = None
    if path is not None:
        interval = DEFAULT_WATCH_INTERVAL_S if watch else None
        reload = ReloadOptions(Path(path), watch_interval_s=interval, file_config=file_config)
    result = asyncio.run(serve(config, reload=reload))
    if result.error is not None:
        print(f"error: {result.error}", file=sys.stderr, flush=True)
    if result.report:
        print(result.report, flush=True)
    return result.exit_code
