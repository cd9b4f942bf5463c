"""``cryptolink run``'s service loop against the simulator: JSONL written and reported, refused starts (an
unwritable output directory, an unknown symbol, a status port in use, a Redis URL redis-py refuses), a full
disk made loud (exit code 1), stop signals that lose nothing (a real ``cryptolink run`` process reloaded by
SIGHUP without a reconnect, then stopped with SIGTERM; SIGHUP stops a run that has no file to reload), the
status API served, the report kept without it, and a status stop that fails without costing the sinks or the
report. Hot reload itself: tests/test_reload.py."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from cryptolink.config import CryptolinkConfig
from cryptolink.logs import log_connection_event
from cryptolink.manager import ExchangeManager
from cryptolink.models import Trade
from cryptolink.service import EXIT_DATA_LOST, EXIT_OK, EXIT_REFUSED, serve
from cryptolink.simulator import Simulator
from cryptolink.simulator.market import Event
from cryptolink.simulator.market import Trade as SimTrade
from cryptolink.sinks.jsonl import read_jsonl
from cryptolink.status.surface import StatusSurface

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def config(sim: Simulator, out: Path | None, symbols: tuple[str, ...] = ("BTC/USDT",)) -> CryptolinkConfig:
    ep = sim.endpoints()["okx"]
    data: dict[str, Any] = {
        "exchanges": {"okx": {"symbols": list(symbols), "ws_url": ep["ws_url"], "rest_url": ep["rest_url"]}},
        "status": {"port": 0},  # any free port: tests never take the default 8766
    }
    if out is not None:
        data["output"] = {"enabled": True, "dir": str(out), "flush_interval_s": 0.1}
    return CryptolinkConfig.from_dict(data, env={})


async def run_until_trades(cfg: CryptolinkConfig, n: int = 3) -> Any:
    """Serve ``cfg`` until ``n`` trades were delivered, then stop; return the result."""
    manager = ExchangeManager(cfg)
    trades = manager.trades("okx")
    stop = asyncio.Event()
    task = asyncio.create_task(serve(cfg, stop, manager=manager))
    for _ in range(n):
        assert isinstance(await asyncio.wait_for(trades.get(), 20), Trade)
    stop.set()
    return await asyncio.wait_for(task, 20)


async def test_serve_until_stopped_writes_jsonl_and_reports(tmp_path: Path) -> None:
    async with Simulator(exchanges=["okx"], speed=2.0) as sim:
        result = await run_until_trades(config(sim, tmp_path))
    assert result.exit_code == EXIT_OK and result.error is None
    assert "okx-ws-1" in result.report and "output" in result.report and "DATA LOST" not in result.report
    written = list(read_jsonl(tmp_path / "okx" / "trades.jsonl"))
    assert len(written) >= 3 and all(t.symbol == "BTC/USDT" and t.feed == "okx" for t in written)
    assert result.output is not None and result.output.lines_dropped == 0


async def test_unwritable_output_dir_is_refused_before_connecting(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    async with Simulator(exchanges=["okx"]) as sim:
        result = await serve(config(sim, blocker / "out"))
        assert sim.okx.all_connections() == []  # nothing was started
    assert result.exit_code == EXIT_REFUSED
    assert result.error is not None and str(blocker) in result.error and "not a directory" in result.error


async def test_unknown_symbol_is_refused(tmp_path: Path) -> None:
    async with Simulator(exchanges=["okx"]) as sim:
        result = await serve(config(sim, None, ("BTC/USDT", "NOPE/USDT")))
    assert result.exit_code == EXIT_REFUSED and result.error is not None and "'NOPE/USDT'" in result.error


async def test_disk_full_during_the_run_is_counted_reported_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "okx").mkdir()
    os.symlink("/dev/full", tmp_path / "okx" / "trades.jsonl")  # every write to it fails: ENOSPC
    async with Simulator(exchanges=["okx"], speed=2.0) as sim:
        result = await run_until_trades(config(sim, tmp_path))
    assert result.exit_code == EXIT_DATA_LOST
    assert result.output is not None and result.output.dropped_write_errors >= 3 and not result.output.healthy
    words = " ".join(result.report.split())  # long lines are wrapped (where depends on the tmp path's length)
    assert "DATA LOST" in words and "No space left on device" in words


async def test_sighup_reloads_the_file_and_sigterm_stops_gracefully_flushes_and_reports(
    tmp_path: Path,
) -> None:
    """A real ``cryptolink run`` process: SIGHUP reloads CONFIG.yaml (the ticker channel added on the running
    connection: nothing reconnects, the process goes on); SIGTERM then stops it like Ctrl-C: buffered lines
    written, report printed, exit code 0."""
    async with Simulator(exchanges=["okx"], speed=4.0) as sim:
        ep = sim.endpoints()["okx"]
        cfg = tmp_path / "c.yaml"
        out = tmp_path / "out"

        def write(channels: str) -> None:
            cfg.write_text(
                "exchanges:\n"
                f"  okx: {{symbols: [BTC/USDT], channels: [{channels}], ws_url: '{ep['ws_url']}', "
                f"rest_url: '{ep['rest_url']}'}}\n"
                # nothing is flushed on a timer during this test: every line on disk was written by the stop
                f"output: {{enabled: true, dir: '{out}', flush_interval_s: 60}}\n"
                "status: {port: 0}\n"
            )

        write("trades")
        sent = asyncio.Event()
        count = 0

        def on_event(ev: Event) -> None:
            nonlocal count
            if isinstance(ev, SimTrade) and "trades:BTC-USDT" in conn.subscriptions:
                count += 1
                if count >= 10:
                    sent.set()

        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cryptolink.cli",
            "run",
            str(cfg),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        conn = await sim.okx.wait_subscribed("trades:BTC-USDT", within_s=30)
        opened = sim.okx.connections_total
        write("trades, ticker")
        proc.send_signal(signal.SIGHUP)
        assert await sim.okx.wait_subscribed("tickers:BTC-USDT", within_s=30) is conn  # reloaded in place
        assert proc.returncode is None and not conn.closed.done() and sim.okx.connections_total == opened
        sim.okx.sources["BTC-USDT"].listeners.append(on_event)
        await asyncio.wait_for(sent.wait(), 30)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    log_text = stderr.decode()
    assert proc.returncode == 0, log_text[-2000:]
    assert "SIGHUP received: reloading" in log_text and "SIGTERM received: stopping" in log_text
    assert "changed okx (+1 -0 streams)" in log_text
    text = stdout.decode()
    assert "cryptolink connection report" in text and "okx-ws-1" in text and "lines" in text
    trades = list(read_jsonl(out / "okx" / "trades.jsonl"))
    assert trades and all(t.symbol == "BTC/USDT" for t in trades)


async def test_run_with_watch_reloads_the_file_when_it_changes(tmp_path: Path) -> None:
    """``cryptolink run --watch`` (the real clock: the file is looked at every second) reloads a changed file
    once it is stable, in place."""
    async with Simulator(exchanges=["okx"], speed=4.0) as sim:
        ep = sim.endpoints()["okx"]
        cfg = tmp_path / "c.yaml"
        entry = f"symbols: [BTC/USDT], ws_url: '{ep['ws_url']}', rest_url: '{ep['rest_url']}'"
        cfg.write_text(f"exchanges:\n  okx: {{{entry}, channels: [trades]}}\nstatus: {{port: 0}}\n")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cryptolink.cli",
            "run",
            str(cfg),
            "--watch",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            conn = await sim.okx.wait_subscribed("trades:BTC-USDT", within_s=30)
            cfg.write_text(
                f"exchanges:\n  okx: {{{entry}, channels: [trades, ticker]}}\nstatus: {{port: 0}}\n"
            )
            assert await sim.okx.wait_subscribed("tickers:BTC-USDT", within_s=30) is conn
        finally:
            proc.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    log_text = stderr.decode()
    assert proc.returncode == 0, log_text[-2000:]
    assert f"watch: {cfg} changed" in log_text and "changed okx (+1 -0 streams)" in log_text


async def test_sighup_stops_a_run_without_a_file_to_reload() -> None:
    async with Simulator(exchanges=["okx"], speed=2.0) as sim:
        cfg = config(sim, None)
        task = asyncio.create_task(serve(cfg))
        await sim.okx.wait_subscribed("trades:BTC-USDT", within_s=20)
        os.kill(os.getpid(), signal.SIGHUP)  # serve's handler takes it
        result = await asyncio.wait_for(task, 20)
    assert result.exit_code == EXIT_OK and result.stopped_by == "SIGHUP" and result.reloads is None


async def _serve_with_status(
    cfg: CryptolinkConfig, manager: ExchangeManager
) -> tuple[asyncio.Task[Any], StatusSurface, asyncio.Event]:
    """Start ``serve(cfg)``; return its task, its status surface (once started) and its stop event."""
    stop = asyncio.Event()
    started: asyncio.Future[StatusSurface] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(cfg, stop, manager=manager, on_status=started.set_result))
    waiting: set[asyncio.Future[Any]] = {task, started}
    done, _ = await asyncio.wait(waiting, timeout=20, return_when=asyncio.FIRST_COMPLETED)
    assert started in done, task.result() if task in done else "the status surface did not start"
    return task, started.result(), stop


async def test_serve_starts_the_status_api(tmp_path: Path) -> None:
    async with Simulator(exchanges=["okx"], speed=2.0) as sim:
        cfg = config(sim, None)
        task, surface, stop = await _serve_with_status(cfg, ExchangeManager(cfg))
        try:
            assert surface.server is not None and surface.server.port != 0
            async with httpx.AsyncClient(base_url=surface.server.url) as http:
                doc = (await http.get("/api/system/status")).json()
            assert doc["instance_id"] == surface.service.instance_id
            assert "okx" in json.dumps(doc["exchange_connections"])  # the run's entry, running or not yet
        finally:
            stop.set()
            result = await asyncio.wait_for(task, 20)
    assert result.exit_code == EXIT_OK and "okx-ws-1" in result.report


async def test_a_status_port_in_use_is_refused_and_nothing_is_left_attached(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        async with Simulator(exchanges=["okx"]) as sim:
            cfg = config(sim, tmp_path / "out")
            cfg = cfg.model_copy(update={"status": cfg.status.model_copy(update={"port": port})})
            manager = ExchangeManager(cfg)
            result = await serve(cfg, manager=manager)
            assert sim.okx.all_connections() == []  # nothing was started
    finally:
        holder.close()
    assert result.exit_code == EXIT_REFUSED
    assert result.error is not None and f"127.0.0.1:{port}" in result.error
    assert (
        log_connection_event not in manager._listeners
    )  # the event logger was taken off the caller's manager
    assert "jsonl-writer-out" not in {t.name for t in threading.enumerate()}  # the sink was closed


async def test_a_redis_url_redis_py_refuses_is_a_refused_start_not_a_crash() -> None:
    async with Simulator(exchanges=["okx"]) as sim:
        cfg = config(sim, None)
        # past the config's own check (which refuses it: tests/test_cli.py): what start() does with it
        bad = cfg.status.model_copy(
            update={"redis_url": SecretStr("redis://127.0.0.1:6379/0?socket_timeout=abc")}
        )
        cfg = cfg.model_copy(update={"status": bad})
        manager = ExchangeManager(cfg)
        result = await serve(cfg, manager=manager)
    assert result.exit_code == EXIT_REFUSED
    assert result.error is not None and "socket_timeout" in result.error
    assert log_connection_event not in manager._listeners


async def test_without_the_status_api_the_report_is_still_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with Simulator(exchanges=["okx"], speed=2.0) as sim:
        cfg = config(sim, None)
        status = cfg.status.model_copy(
            update={"enabled": False, "report_interval_s": 0.05, "snapshot_interval_s": 0.05}
        )
        cfg = cfg.model_copy(update={"status": status})
        task, surface, stop = await _serve_with_status(cfg, ExchangeManager(cfg))
        try:
            assert surface.server is None  # no HTTP server
            logged = asyncio.Event()
            surface.service.add_snapshot_listener(
                lambda _: logged.set() if surface.service.reports_logged >= 1 else None
            )
            await asyncio.wait_for(logged.wait(), 20)
        finally:
            stop.set()
            result = await asyncio.wait_for(task, 20)
    assert result.exit_code == EXIT_OK
    assert any(r.getMessage().startswith("connection report") for r in caplog.records)
    assert "status API on" not in caplog.text


async def test_a_failing_status_stop_still_closes_the_sinks_and_reports(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with Simulator(exchanges=["okx"], speed=2.0) as sim:
        cfg = config(sim, tmp_path)
        task, surface, stop = await _serve_with_status(cfg, ExchangeManager(cfg))

        async def broken_stop() -> None:
            raise RuntimeError("status stop failed")

        surface.stop = broken_stop  # type: ignore[method-assign]
        stop.set()
        result = await asyncio.wait_for(task, 20)
        assert surface.server is not None
        await StatusSurface.stop(surface)  # the real stop, for the test's own cleanup
    assert result.exit_code == EXIT_OK and "output" in result.report  # the sinks closed, the report was made
    assert result.output is not None
    assert "stopping the status service failed" in caplog.text and "status stop failed" in caplog.text
