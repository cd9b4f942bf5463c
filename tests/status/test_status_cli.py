"""``cryptolink status`` against a real status server on loopback and the real Redis: the table lists every
connection, exit 0 healthy / 1 unhealthy or an unknown instance / 2 unreachable (one line, no traceback), the
token from ``--token`` or ``CRYPTOLINK__STATUS__TOKEN``, ``--watch`` refreshing until Ctrl-C, and ``--help``
without the heavy imports."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from rich.console import Console
from rich.text import Text
from typer.testing import CliRunner, Result

from cryptolink.cli import app
from cryptolink.config import StatusConfig
from cryptolink.manager import ExchangeManager
from cryptolink.simulator import Fault, Simulator
from cryptolink.status import documents
from cryptolink.status.cluster import RedisStatusPublisher, status_key
from cryptolink.status.snapshot import StatusSnapshot
from cryptolink.status.surface import StatusSurface
from cryptolink.status.table import View, watch
from tests.status.test_cluster import (
    REDIS_URL,
    closed_port,
    okx_manager,
    prefix,
    publish,
    redis_client,
    status_service,
    until_healthy,
)

pytestmark = [pytest.mark.timeout(60), pytest.mark.integration]

__all__ = ["prefix"]  # the fixture, imported for this module's tests

TOKEN = "t-91c4e2-cli-status-token"
WIDE = {"COLUMNS": "250", "CRYPTOLINK__STATUS__TOKEN": None}


async def cli(*args: str, env: dict[str, str | None] | None = None) -> Result:
    """``cryptolink status ARGS`` in a worker thread (the server under test runs on this loop)."""
    merged = {**WIDE, **(env or {})}

    def invoke() -> Result:
        return CliRunner().invoke(app, ["status", *args], env=merged)

    return await asyncio.to_thread(invoke)


@pytest.fixture
async def surface_of() -> AsyncIterator[Callable[..., Any]]:
    """Starts a :class:`StatusSurface` on an ephemeral port for a manager; stops them all afterwards."""
    started: list[StatusSurface] = []

    async def start(manager: ExchangeManager, **status: Any) -> StatusSurface:
        surface = StatusSurface(manager, StatusConfig(port=0, push_interval_s=3600, **status))
        started.append(surface)
        await surface.start()
        return surface

    yield start
    for surface in started:
        await surface.stop()


def url_of(surface: StatusSurface) -> str:
    assert surface.server is not None
    return surface.server.url


async def until_snapshot(surface: StatusSurface, healthy: bool) -> None:
    """Wait (on the snapshot listener) until the surface's latest snapshot has this health."""
    reached = asyncio.Event()

    def check(snap: StatusSnapshot) -> None:
        if documents.health(snap)[0] is healthy:
            reached.set()

    surface.service.add_snapshot_listener(check)
    check(surface.service.latest)
    await asyncio.wait_for(reached.wait(), 30)


# --------------------------------------------------------------------------------------------- one instance
async def test_a_healthy_instance_exits_0_and_an_unhealthy_one_1_with_every_connection_listed(
    surface_of: Callable[..., Any],
) -> None:
    async with Simulator(exchanges=["okx"], speed=1.0) as sim:
        manager = okx_manager(sim)
        surface = await surface_of(manager, snapshot_interval_s=0.05)
        try:
            await manager.start()
            await until_snapshot(surface, healthy=True)
            ok = await cli("--url", url_of(surface))
            conn_id = surface.service.latest.stats.feeds[0].connections[0].connection_id
            sim.inject(Fault("outage", duration_s=60.0), exchange="okx")
            await until_snapshot(surface, healthy=False)
            down = await cli("--url", url_of(surface))
        finally:
            await manager.stop()

    assert ok.exit_code == 0, ok.output
    assert conn_id in ok.stdout and "connected" in ok.stdout and "healthy: yes" in ok.stdout
    assert f"{surface.service.instance_id}  healthy" in ok.stdout
    for column in (
        "entry",
        "connection",
        "quality",
        "latency ms",
        "msg/s",
        "reconnects",
        "books",
        "last error",
    ):
        assert column in ok.stdout
    assert "1/1" in ok.stdout  # books live/total
    assert down.exit_code == 1, down.output
    assert conn_id in down.stdout and "healthy: NO" in down.stdout and "unhealthy:" in down.stdout


async def test_the_token_comes_from_the_option_or_the_environment(surface_of: Callable[..., Any]) -> None:
    surface = await surface_of(okx_manager(), token=TOKEN)  # never started: reachable but unhealthy
    url = url_of(surface)
    refused = await cli("--url", url)
    by_option = await cli("--url", url, "--token", TOKEN)
    by_env = await cli("--url", url, env={"CRYPTOLINK__STATUS__TOKEN": TOKEN})
    wrong = await cli("--url", url, "--token", "not-it")

    assert refused.exit_code == 2 and "401" in refused.stderr and "Traceback" not in refused.output
    assert by_option.exit_code == 1 and "okx: not running" in by_option.stdout
    assert by_env.exit_code == 1 and "okx: not running" in by_env.stdout
    assert wrong.exit_code == 2


async def test_an_unreachable_endpoint_exits_2_with_one_line() -> None:
    result = await cli("--url", f"http://127.0.0.1:{closed_port()}")
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach") and "Traceback" not in result.output


async def test_url_and_redis_together_are_refused() -> None:
    result = await cli("--url", "http://127.0.0.1:1", "--redis", REDIS_URL)
    assert result.exit_code == 2 and "not both" in result.stderr


# ------------------------------------------------------------------------------------------------- Redis
async def test_redis_lists_every_instance_and_an_unknown_one_fails(prefix: str) -> None:
    async with Simulator(exchanges=["okx"], speed=1.0) as sim:
        manager = okx_manager(sim)
        services = [status_service(manager, "cli-a"), status_service(manager, "cli-b")]
        publishers = [RedisStatusPublisher(s, REDIS_URL, prefix=prefix, ttl_s=5.0) for s in services]
        try:
            for p in publishers:
                await p.start()
            await manager.start()
            await until_healthy(manager)
            for s, p in zip(services, publishers, strict=True):
                await publish(s, p)
            conn_id = services[0].latest.stats.feeds[0].connections[0].connection_id
        finally:
            await manager.stop()
            for p in publishers:
                await p.aclose()

    healthy = await cli("--redis", REDIS_URL, "--prefix", prefix)
    async with redis_client() as client:
        await client.pexpire(status_key(prefix, "cli-b"), 0)  # cli-b's snapshot expires now
    one_unknown = await cli("--redis", REDIS_URL, "--prefix", prefix)

    assert healthy.exit_code == 0, healthy.output
    assert "cli-a  healthy: yes" in healthy.stdout and "cli-b  healthy: yes" in healthy.stdout
    assert (
        healthy.stdout.count(conn_id) == 2 and "2 instance(s), 2 live, 0 unknown, 2 healthy" in healthy.stdout
    )
    assert one_unknown.exit_code == 1, one_unknown.output
    assert "cli-b  UNKNOWN" in one_unknown.stdout and "1 unknown, 1 healthy" in one_unknown.stdout


async def test_no_instance_in_redis_exits_1(prefix: str) -> None:
    result = await cli("--redis", REDIS_URL, "--prefix", prefix)
    assert result.exit_code == 1 and "no instance publishes" in result.stdout


async def test_an_unreachable_redis_exits_2_with_one_line_and_no_password() -> None:
    result = await cli("--redis", f"redis://:hunter2-secret@127.0.0.1:{closed_port()}/0")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot read Redis redis://:***@")
    assert "hunter2-secret" not in result.output and "Traceback" not in result.output


# ------------------------------------------------------------------------------------------------- watch
def test_watch_refreshes_until_ctrl_c_and_returns_the_last_exit_code() -> None:
    views = iter([View(Text("first look"), 0), View(Text("second look"), 1), View(Text("third look"), 2)])
    loads: list[View] = []
    sleeps: list[float] = []

    def load() -> View:
        loads.append(next(views))
        return loads[-1]

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise KeyboardInterrupt

    out = io.StringIO()
    code = watch(load, 2.5, Console(file=out, width=120, force_terminal=True, color_system=None), sleep=sleep)
    assert code == 1  # the view shown when Ctrl-C came
    assert len(loads) == 2 and sleeps == [2.5, 2.5]
    assert "first look" in out.getvalue() and "second look" in out.getvalue()
    assert "refreshing every 2.5 s" in out.getvalue()


# ------------------------------------------------------------------------------------------------- help
def test_help_does_not_import_the_status_client() -> None:
    code = (
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "from cryptolink.cli import app\n"
        "r = CliRunner().invoke(app, ['status', '--help'])\n"
        "heavy = sorted(m for m in ('cryptolink.status.table', 'redis', 'httpx', 'rich.live') if m in sys.modules)\n"
        "print(json.dumps({'code': r.exit_code, 'heavy': heavy, 'out': r.output}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    answer = json.loads(proc.stdout)
    assert answer["code"] == 0 and "--redis" in answer["out"] and "--watch" in answer["out"]
    assert answer["heavy"] == []
