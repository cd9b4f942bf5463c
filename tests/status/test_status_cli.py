"""``cryptolink status`` against a real status server on loopback and the real Redis: the table lists every
connection, exit 0 healthy (stopped instances do not count) / 1 unhealthy, an unknown instance or a collision /
2 unreachable or a bad argument (one line, no traceback, never the token or a password), the token from
``--token`` or ``CRYPTOLINK__STATUS__TOKEN``, data shown as text and never as rich markup, ``--watch``
refreshing until Ctrl-C, and ``--help`` without the heavy imports."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import time
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
from cryptolink.status.cluster import collision_key, index_key, status_key
from cryptolink.status.snapshot import StatusSnapshot
from cryptolink.status.surface import StatusSurface
from cryptolink.status.table import View, load_instance, watch
from tests.status.test_cluster import (
    REDIS_URL,
    closed_port,
    okx_manager,
    prefix,
    publishing,
    redis_client,
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
async def test_redis_lists_every_instance_a_stopped_one_passes_and_an_unknown_one_fails(prefix: str) -> None:
    async with publishing(prefix, ("cli-a", "cli-b")) as (services, publishers):
        conn_id = services[0].latest.stats.feeds[0].connections[0].connection_id
        healthy = await cli("--redis", REDIS_URL, "--prefix", prefix)
        await publishers[1].aclose()  # cli-b stops cleanly
        one_stopped = await cli("--redis", REDIS_URL, "--prefix", prefix)
        async with redis_client() as client:
            await client.pexpire(status_key(prefix, "cli-a"), 0)  # cli-a "crashed": its snapshot expires
        one_unknown = await cli("--redis", REDIS_URL, "--prefix", prefix)

    assert healthy.exit_code == 0, healthy.output
    assert "cli-a  healthy: yes" in healthy.stdout and "cli-b  healthy: yes" in healthy.stdout
    assert healthy.stdout.count(conn_id) == 2
    assert "2 instance(s), 2 live, 0 unknown, 0 stopped, 2 healthy" in healthy.stdout
    assert one_stopped.exit_code == 0, one_stopped.output
    assert "cli-b  STOPPED" in one_stopped.stdout and "cli-a  healthy: yes" in one_stopped.stdout
    assert "2 instance(s), 1 live, 0 unknown, 1 stopped, 1 healthy" in one_stopped.stdout
    assert one_unknown.exit_code == 1, one_unknown.output
    assert "cli-a  UNKNOWN" in one_unknown.stdout and "1 unknown, 1 stopped, 0 healthy" in one_unknown.stdout


async def test_no_instance_in_redis_exits_1(prefix: str) -> None:
    result = await cli("--redis", REDIS_URL, "--prefix", prefix)
    assert result.exit_code == 1 and "no instance publishes" in result.stdout


async def test_an_unreachable_redis_exits_2_with_one_line_and_no_password() -> None:
    result = await cli("--redis", f"redis://:hunter2-secret@127.0.0.1:{closed_port()}/0")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot read Redis redis://:***@")
    assert "hunter2-secret" not in result.output and "Traceback" not in result.output


# ------------------------------------------------------------------------- documents planted in Redis
def status_doc(instance_id: str, *, healthy: bool = True, last_error: str = "") -> dict[str, Any]:
    """A small ``/api/system/status`` document with one okx connection."""
    connection = {
        "exchange_name": "okx",
        "connection_id": "okx-ws-1",
        "status": "connected",
        "status_color": "green",
        "last_error": last_error,
    }
    summary = {"healthy": healthy, "unhealthy_reasons": [] if healthy else ["okx: down"]}
    return {
        "instance_id": instance_id,
        "exchange_connections": {"summary": summary, "connections": [connection]},
    }


async def plant(prefix: str, instance_id: str, doc: dict[str, Any], *, collision: bool = False) -> None:
    """Write ``doc`` as ``instance_id``'s status (as a publisher would) and list it in the index."""
    now_ms = time.time_ns() // 1_000_000
    async with redis_client() as client:
        await client.set(status_key(prefix, instance_id), json.dumps(doc), px=30_000)
        await client.zadd(index_key(prefix), {instance_id: now_ms})
        if collision:
            await client.set(collision_key(prefix, instance_id), now_ms, px=30_000)


async def test_exchange_text_is_shown_as_text_never_as_markup(prefix: str) -> None:
    """An exchange error quoting a path in brackets used to crash rich; ``[b]`` used to vanish; escape
    sequences would reach the terminal."""
    await plant(prefix, "i-1", status_doc("i-1", last_error="e [/ws/v5/public] [b]x[/b] \x1b[2Jz"))
    result = await cli("--redis", REDIS_URL, "--prefix", prefix)
    assert result.exit_code == 0, result.output
    assert "e [/ws/v5/public] [b]x[/b] \\x1b[2Jz" in result.stdout
    assert "\x1b" not in result.stdout


async def test_stopped_instances_do_not_fail_but_nothing_running_does(prefix: str) -> None:
    stopped = {"state": "stopped", "stopped_at": "2026-12-02T03:50:11.998Z", "instance_id": "old-1"}
    await plant(prefix, "old-1", stopped)
    only_stopped = await cli("--redis", REDIS_URL, "--prefix", prefix)
    await plant(prefix, "new-1", status_doc("new-1"))
    with_live = await cli("--redis", REDIS_URL, "--prefix", prefix)
    assert only_stopped.exit_code == 1, only_stopped.output
    assert "every instance is stopped" in " ".join(only_stopped.stdout.split())  # may wrap
    assert with_live.exit_code == 0, with_live.output
    assert "old-1  STOPPED  at 2026-12-02T03:50:11.998Z" in with_live.stdout
    assert "2 instance(s), 1 live, 0 unknown, 1 stopped, 1 healthy" in with_live.stdout


async def test_an_instance_id_written_by_two_processes_fails(prefix: str) -> None:
    await plant(prefix, "twin-1", status_doc("twin-1"), collision=True)
    result = await cli("--redis", REDIS_URL, "--prefix", prefix)
    assert result.exit_code == 1, result.output
    assert "COLLISION: two processes write this instance id" in result.stdout
    assert "1 live, 0 unknown, 0 stopped, 0 healthy, 1 collision(s)" in result.stdout


# --------------------------------------------------------------------------------------- secrets
@pytest.mark.parametrize(
    "token", ["tok\x01en-sekrit-1", "t\u00f6k\u00e9n-sekrit-2", "tok\x1b[2Jen-sekrit-3", "a\nb-sekrit-4"]
)
async def test_a_token_with_control_or_non_ascii_characters_is_refused_without_echo(token: str) -> None:
    by_option = await cli("--url", "http://127.0.0.1:1", "--token", token)
    by_env = await cli("--url", "http://127.0.0.1:1", env={"CRYPTOLINK__STATUS__TOKEN": token})
    for result in (by_option, by_env):
        assert result.exit_code == 2, result.output
        assert "printable ASCII" in result.stderr and "Traceback" not in result.output
        assert "sekrit" not in result.output


def test_the_table_module_refuses_and_never_quotes_a_bad_token() -> None:
    """Called directly (not through the command line), a header-breaking token is not sent either."""
    view = load_instance("http://127.0.0.1:1", "a\nb-sekrit-5")
    assert view.code == 2 and view.error is not None
    assert "sekrit" not in view.error and "printable ASCII" in view.error


async def test_surrounding_whitespace_of_the_token_is_ignored(surface_of: Callable[..., Any]) -> None:
    surface = await surface_of(okx_manager(), token=TOKEN)
    result = await cli("--url", url_of(surface), "--token", f"  {TOKEN}\n")
    assert result.exit_code == 1 and "okx: not running" in result.stdout  # reachable, unhealthy


async def test_a_password_in_the_url_is_never_printed(surface_of: Callable[..., Any]) -> None:
    unreachable = await cli("--url", f"http://ops:pw-sekrit-6@127.0.0.1:{closed_port()}")
    surface = await surface_of(okx_manager(), token=TOKEN)
    host_port = url_of(surface).removeprefix("http://")
    refused = await cli("--url", f"http://ops:pw-sekrit-6@{host_port}")
    for result in (unreachable, refused):
        assert result.exit_code == 2, result.output
        assert "sekrit" not in result.output
        assert "http://ops:***@127.0.0.1:" in result.stderr
    assert "answered 401" in refused.stderr


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


def test_the_instance_view_has_a_rest_line_only_when_there_is_rest() -> None:
    from cryptolink.status.table import instance_view

    def render(doc: dict[str, Any]) -> str:
        out = io.StringIO()
        Console(file=out, width=160, color_system=None).print(instance_view(doc))
        return out.getvalue()

    doc = status_doc("i-1")
    assert "rest:" not in render(doc)
    doc["rest"] = {
        "members": 3,
        "states": {"healthy": 2, "degraded": 0, "offline": 1, "maintenance": 0},
        "groups": 1,
        "budgets": 2,
        "budgets_fallback": 1,
    }
    line = next(x for x in render(doc).splitlines() if x.startswith("rest:"))
    assert (
        line
        == "rest: 3 members (healthy 2, offline 1), 1 groups, 2 budgets, 1 in fallback (Redis unreachable)"
    )


def test_the_instance_view_has_nats_and_worker_lines_only_for_them() -> None:
    from cryptolink.status.table import instance_view

    def render(doc: dict[str, Any]) -> list[str]:
        out = io.StringIO()
        Console(file=out, width=200, color_system=None).print(instance_view(doc))
        return out.getvalue().splitlines()

    doc = status_doc("i-1")
    assert not [x for x in render(doc) if x.startswith(("nats:", "worker "))]
    doc["nats"] = {
        "connected": False,
        "acked": 9709,
        "duplicates": 1000,
        "buffered": 12,
        "in_flight": 3,
        "lost": 7,
    }
    doc["worker"] = {
        "worker_id": "w1",
        "state": "active",
        "slots": 6,
        "target": 2,
        "workers_seen": ["w1", "w2", "w3"],
        "held": [{"shard": "binance", "replica": 0}, {"shard": "okx", "replica": 1}],
        "leases_lost": 1,
        "config_mismatch": ["w9"],
    }
    lines = render(doc)
    assert "nats: NOT CONNECTED, 9,709 acked (1,000 duplicates), 12 buffered, 3 in flight, 7 lost" in lines
    assert (
        "worker w1 (active): 2 of 6 slots held (target 2; 3 workers): binance#0, okx#1; 1 leases lost; "
        "ANOTHER CONFIGURATION: w9"
    ) in lines
