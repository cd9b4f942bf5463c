"""Hot reload (:mod:`cryptolink.reload`): the plan of every kind of change, restart-only settings, the ``rest``
section handed over, reloads serialised (a burst during a reload gives exactly one more), ``--watch`` on a fake
clock (one reload once the file is stable; a half-written file or a rename in progress is never read), and a
running ``serve`` reloaded by a real SIGHUP against the simulator: entries added, removed and changed in place
without touching the others' connections, a file with errors refused with every error while the running
configuration stays, an entry that cannot start left out (and retried) without stopping the rest."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from cryptolink.clock import FakeClock
from cryptolink.config import CryptolinkConfig, RestConfig, load_config
from cryptolink.manager import ExchangeManager
from cryptolink.models import Channel, Subscription
from cryptolink.reload import (
    ChangeKind,
    ConfigReloader,
    ReloadOptions,
    ReloadOutcome,
    RestReconfigurable,
    plan_reload,
)
from cryptolink.service import EXIT_OK, RunResult, serve
from cryptolink.simulator import SimConfig, Simulator
from cryptolink.status.surface import StatusSurface

if TYPE_CHECKING:
    from cryptolink.rest.manager import RestManager

    def _the_rest_manager_is_reconfigurable(rm: RestManager) -> RestReconfigurable:
        return rm  # mypy checks that the REST manager is what a reload hands the rest section to

# ------------------------------------------------------------------------------------------------ the plan

BASE: dict[str, Any] = {
    "exchanges": {
        "a": {"exchange": "okx", "symbols": ["BTC/USDT", "ETH/USDT"], "channels": ["trades", "book"]},
        "b": {"exchange": "binance", "symbols": ["BTC/USDT"]},
        "off": {"exchange": "okx", "symbols": ["BTC/USDT"], "enabled": False},
    },
    "status": {"port": 0},
}


def cfg(data: dict[str, Any]) -> CryptolinkConfig:
    return CryptolinkConfig.from_dict(data, env={})


def changed(**entry_a: Any) -> dict[str, Any]:
    """BASE with entry ``a``'s keys updated."""
    return {**BASE, "exchanges": {**BASE["exchanges"], "a": {**BASE["exchanges"]["a"], **entry_a}}}


def subs(channel: Channel, *symbols: str) -> set[Subscription]:
    return {Subscription(channel, s) for s in symbols}


@pytest.mark.parametrize(
    ("new", "kind", "fields"),
    [
        (changed(), ChangeKind.UNCHANGED, ()),
        (changed(symbols=["ETH/USDT", "BTC/USDT"]), ChangeKind.UNCHANGED, ("symbols",)),  # order only
        (changed(symbols=["BTC/USDT", "SOL/USDT"]), ChangeKind.CHANGED, ("symbols",)),
        (changed(channels=["trades"]), ChangeKind.CHANGED, ("channels.book",)),
        (changed(ws_url="ws://127.0.0.1:1"), ChangeKind.REPLACED, ("ws_url",)),
        (changed(market="perpetual", symbols=["BTC/USDT:USDT"]), ChangeKind.REPLACED, ("market", "symbols")),
        (changed(reconnect={"max_delay_s": 5}), ChangeKind.REPLACED, ("reconnect.max_delay_s",)),
        (changed(watchdog={"min_idle_s": 1}), ChangeKind.REPLACED, ("watchdog.min_idle_s",)),
        (
            changed(api_key="k-0123456789", api_secret="s-0123456789"),
            ChangeKind.REPLACED,
            ("api_key", "api_secret"),
        ),
        (changed(symbols=["SOL/USDT"], testnet=True), ChangeKind.REPLACED, ("symbols", "testnet")),
        (changed(enabled=False), ChangeKind.REMOVED, ()),
    ],
)
def test_each_kind_of_entry_change(new: dict[str, Any], kind: ChangeKind, fields: tuple[str, ...]) -> None:
    plan = plan_reload(cfg(BASE), cfg(new))
    (entry,) = [e for e in plan.entries if e.name == "a"]
    assert entry.kind is kind and entry.fields == fields
    b = next(e for e in plan.entries if e.name == "b")
    assert b.kind is ChangeKind.UNCHANGED  # the other entry is never touched
    assert "off" not in {e.name for e in plan.entries}  # disabled in both: not running, not planned
    assert plan.restart_required == () and not plan.rest_changed
    assert "0123456789" not in plan.summary()  # secrets are named, never shown


def test_in_place_change_subscribes_and_unsubscribes_only_the_difference() -> None:
    plan = plan_reload(cfg(BASE), cfg(changed(symbols=["BTC/USDT", "SOL/USDT"], channels=["trades"])))
    (entry,) = plan.of(ChangeKind.CHANGED)
    assert set(entry.subscribe) == subs(Channel.TRADES, "SOL/USDT")
    assert set(entry.unsubscribe) == subs(Channel.TRADES, "ETH/USDT") | subs(
        Channel.BOOK, "BTC/USDT", "ETH/USDT"
    )
    assert plan.changed == ("a",) and plan.unchanged == ("b",) and not plan.empty
    assert plan.target.exchanges["a"].symbols == ["BTC/USDT", "SOL/USDT"]


def test_entries_added_removed_enabled_and_disabled() -> None:
    new = {
        **BASE,
        "exchanges": {
            "a": {**BASE["exchanges"]["a"], "enabled": False},  # disabled: removed
            "off": {**BASE["exchanges"]["off"], "enabled": True},  # enabled: added
            "c": {"exchange": "okx", "symbols": ["SOL/USDT"]},  # new: added
        },  # b: gone: removed
    }
    plan = plan_reload(cfg(BASE), cfg(new))
    assert plan.added == ("c", "off") and plan.removed == ("a", "b")
    assert plan.changed == plan.replaced == plan.unchanged == ()
    assert "added c, off; removed a, b" in plan.summary()


def test_settings_read_only_at_start_are_listed_not_applied_and_the_rest_still_is() -> None:
    new = {
        **changed(symbols=["BTC/USDT"]),
        "status": {"port": 9999, "snapshot_interval_s": 2},
        "output": {"enabled": True, "dir": "/tmp/elsewhere"},
        "log_level": "debug",
        "consumer_queue_size": 5,
    }
    old = cfg(BASE)
    plan = plan_reload(old, cfg(new))
    assert plan.restart_required == (
        "output.enabled",
        "output.dir",
        "status.port",
        "status.snapshot_interval_s",
        "consumer_queue_size",
        "log_level",
    )
    assert plan.changed == ("a",)  # applied all the same
    assert plan.target.status == old.status and plan.target.output == old.output  # kept as running
    assert plan.target.log_level == "INFO" and plan.target.consumer_queue_size == old.consumer_queue_size
    assert plan.target.exchanges["a"].symbols == ["BTC/USDT"]


def test_a_changed_rest_section_is_planned() -> None:
    rest = {"members": {"m1": {"exchange": "binance"}}, "groups": {"g": {"members": ["m1"]}}}
    same = plan_reload(cfg({**BASE, "rest": rest}), cfg({**BASE, "rest": rest}))
    assert not same.rest_changed and same.empty
    weights = {**rest, "groups": {"g": {"members": ["m1"], "strategy": "weighted"}}}
    plan = plan_reload(cfg({**BASE, "rest": rest}), cfg({**BASE, "rest": weights}))
    assert plan.rest_changed and not plan.empty and plan.restart_required == ()
    assert plan.rest.groups["g"].strategy == "weighted" and plan.target.rest == plan.rest


# --------------------------------------------------------------------------- reloader without connections


def write_yaml(path: Path, data: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False))


class BlockingRest:
    """A REST manager whose ``reconfigure`` waits until released (a reload held in progress)."""

    def __init__(self, fail: bool = False) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.configs: list[RestConfig] = []
        self.fail = fail

    async def reconfigure(self, config: RestConfig) -> object:
        self.configs.append(config)
        self.entered.set()
        await self.release.wait()
        if self.fail:
            raise RuntimeError("member m2 cannot be built")
        return None


def outcome_future() -> tuple[asyncio.Future[ReloadOutcome], Callable[[ReloadOutcome], None]]:
    fut: asyncio.Future[ReloadOutcome] = asyncio.get_running_loop().create_future()

    def listener(outcome: ReloadOutcome) -> None:
        if not fut.done():
            fut.set_result(outcome)

    return fut, listener


REST_1 = {"members": {"m1": {"exchange": "binance"}}}
REST_2 = {"members": {"m1": {"exchange": "binance"}, "m2": {"exchange": "binance", "weight": 3}}}


@pytest.mark.timeout(10)
async def test_a_burst_of_requests_during_a_reload_queues_exactly_one_more(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    write_yaml(path, {**BASE, "rest": REST_1})
    start = load_config(path, env={})
    rest = BlockingRest()
    as_protocol: RestReconfigurable = rest  # mypy: the fake is what a reload accepts
    reloader = ConfigReloader(start, ExchangeManager(start), path=path, rest=as_protocol, env={})
    outcomes: list[ReloadOutcome] = []
    reloader.add_listener(outcomes.append)
    reloader.start()
    write_yaml(path, {**BASE, "rest": REST_2})
    reloader.request("SIGHUP")
    await asyncio.wait_for(rest.entered.wait(), 5)  # the first reload is applying the rest section
    assert reloader.stats().in_progress
    for _ in range(3):
        reloader.request("SIGHUP")
    rest.release.set()
    second, listener = outcome_future()
    reloader.add_listener(lambda o: listener(o) if len(outcomes) == 2 else None)
    await asyncio.wait_for(second, 5)
    stats = reloader.stats()
    assert (stats.requests, stats.applied, stats.coalesced, stats.refused) == (4, 2, 2, 0)
    assert len(outcomes) == 2 and not stats.in_progress
    assert [len(c.members) for c in rest.configs] == [2]  # the second reload found nothing more to change
    assert outcomes[0].result is not None and [s.kind for s in outcomes[0].result.done] == ["rest"]
    assert reloader.config.rest.members["m2"].weight == 3
    await reloader.aclose()


@pytest.mark.timeout(10)
async def test_a_rest_manager_that_refuses_keeps_the_old_section_and_is_retried(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    write_yaml(path, {**BASE, "rest": REST_1})
    start = load_config(path, env={})
    rest = BlockingRest(fail=True)
    rest.release.set()
    reloader = ConfigReloader(start, ExchangeManager(start), path=path, rest=rest, env={})
    write_yaml(path, {**BASE, "rest": REST_2})
    outcome = await reloader.reload()
    assert outcome.applied and outcome.result is not None and not outcome.result.ok
    (failed,) = outcome.result.failed
    assert failed.target == "rest" and failed.error == "RuntimeError: member m2 cannot be built"
    assert reloader.file_config.rest == start.rest and reloader.config.rest == start.rest
    assert reloader.stats().failed_steps == 1 and "m2 cannot be built" in (reloader.stats().last_error or "")
    rest.fail = False
    again = await reloader.reload()  # the same file: the section still differs from what runs
    assert again.result is not None and again.result.ok and len(rest.configs) == 2
    assert "m2" in reloader.file_config.rest.members


# ----------------------------------------------------------------------------------------- --watch, fake clock

WATCHED = "exchanges:\n  a: {exchange: okx, symbols: [BTC/USDT]}\nstatus: {port: 0}\nlog_level: ERROR\n"


async def watching(
    tmp_path: Path,
) -> tuple[ConfigReloader, FakeClock, Path, list[ReloadOutcome], asyncio.Task[None]]:
    path = tmp_path / "c.yaml"
    path.write_text(WATCHED)
    start = load_config(path, env={})
    clock = FakeClock()
    reloader = ConfigReloader(start, ExchangeManager(start), path=path, env={}, clock=clock)
    outcomes: list[ReloadOutcome] = []
    reloader.add_listener(outcomes.append)
    reloader.start()
    task = asyncio.create_task(reloader.watch(1.0))
    await clock.advance(0)  # the watcher is now asleep on the fake clock
    return reloader, clock, path, outcomes, task


async def stop_watching(reloader: ConfigReloader, task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await reloader.aclose()


@pytest.mark.timeout(10)
async def test_watch_reloads_once_after_a_write_in_pieces_is_stable(tmp_path: Path) -> None:
    reloader, clock, path, outcomes, task = await watching(tmp_path)
    try:
        done, listener = outcome_future()
        reloader.add_listener(listener)
        text = WATCHED.replace("ERROR", "DEBUG") + "event_log_size: 50\n"
        path.write_text(text[:30])  # an editor's first piece: not even valid YAML
        await clock.advance(1.0)  # change seen: wait one more interval
        with path.open("a") as f:
            f.write(text[30:])
        await clock.advance(1.0)  # changed again since: still not stable
        assert reloader.stats().requests == 0
        await clock.advance(1.0)  # unchanged for one interval: reloaded
        outcome = await asyncio.wait_for(done, 5)
        assert outcome.trigger == "watch" and outcome.applied
        assert outcome.plan is not None and outcome.plan.restart_required == ("log_level", "event_log_size")
        for _ in range(5):
            await clock.advance(1.0)
        stats = reloader.stats()
        assert (stats.requests, stats.applied, stats.refused) == (1, 1, 0) and len(outcomes) == 1
    finally:
        await stop_watching(reloader, task)


@pytest.mark.timeout(10)
async def test_watch_sees_a_replacement_by_rename_of_the_same_size(tmp_path: Path) -> None:
    reloader, clock, path, _, task = await watching(tmp_path)
    try:
        done, listener = outcome_future()
        reloader.add_listener(listener)
        fresh = tmp_path / "c.yaml.tmp"
        fresh.write_text(WATCHED.replace("ERROR", "DEBUG"))  # same size; only the inode (and mtime) tell
        os.utime(fresh, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))  # same mtime too
        os.replace(fresh, path)
        await clock.advance(1.0)
        await clock.advance(1.0)
        outcome = await asyncio.wait_for(done, 5)
        assert (
            outcome.applied and outcome.plan is not None and outcome.plan.restart_required == ("log_level",)
        )
        assert reloader.stats().requests == 1
    finally:
        await stop_watching(reloader, task)


@pytest.mark.timeout(10)
async def test_watch_waits_for_a_missing_file_and_reloads_it_once_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reloader, clock, path, _, task = await watching(tmp_path)
    try:
        path.unlink()
        for _ in range(3):
            await clock.advance(1.0)
        assert reloader.stats().requests == 0 and "is missing" in caplog.text
        done, listener = outcome_future()
        reloader.add_listener(listener)
        path.write_text(WATCHED.replace("ERROR", "DEBUG"))
        await clock.advance(1.0)
        await clock.advance(1.0)
        outcome = await asyncio.wait_for(done, 5)
        assert outcome.applied and reloader.stats().requests == 1 and reloader.stats().refused == 0
    finally:
        await stop_watching(reloader, task)


# ---------------------------------------------------------------------------------- a running serve, SIGHUP

OKX_SYMBOLS = ("BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT", "LTC-USDT", "DOGE-USDT")


def okx_entry(sim: Simulator, *symbols: str, **extra: Any) -> dict[str, Any]:
    ep = sim.endpoints()["okx"]
    return {
        "exchange": "okx",
        "symbols": list(symbols),
        "channels": ["trades"],
        "ws_url": ep["ws_url"],
        "rest_url": ep["rest_url"],
        **extra,
    }


def run_file(path: Path, entries: dict[str, Any], **top: Any) -> None:
    write_yaml(path, {"exchanges": entries, "status": {"port": 0}, **top})


def connections_of(manager: ExchangeManager) -> dict[str, list[tuple[str, int, int]]]:
    """Entry -> its connections as (id, reconnect attempts, sessions ended)."""
    return {
        fs.name: [(c.connection_id, c.reconnect_attempts, c.disconnections) for c in fs.connections]
        for fs in manager.stats().feeds
    }


class Run:
    """``serve`` of a configuration file, reloadable; outcomes of its reloads in a queue."""

    def __init__(
        self, path: Path, clock: FakeClock | None = None, watch_interval_s: float | None = None
    ) -> None:
        self.config = load_config(path, env={})
        self.manager = ExchangeManager(self.config)
        self.stop = asyncio.Event()
        self.outcomes: asyncio.Queue[ReloadOutcome] = asyncio.Queue()
        self.surfaces: list[StatusSurface] = []
        options = ReloadOptions(
            path, watch_interval_s=watch_interval_s, env={}, clock=clock, on_reload=self.outcomes.put_nowait
        )
        self.task = asyncio.create_task(
            serve(
                self.config, self.stop, manager=self.manager, reload=options, on_status=self.surfaces.append
            )
        )

    async def next_outcome(self) -> ReloadOutcome:
        return await asyncio.wait_for(self.outcomes.get(), 30)

    async def finish(self) -> RunResult:
        self.stop.set()
        return await asyncio.wait_for(self.task, 30)


def sighup() -> None:
    os.kill(os.getpid(), signal.SIGHUP)  # serve's handler takes it: this process does not stop


@pytest.mark.integration
@pytest.mark.timeout(90)
async def test_sighup_adds_removes_and_changes_entries_without_touching_the_others(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    async with Simulator(
        exchanges=["okx"], mode="synthetic", config=SimConfig(symbols={"okx": OKX_SYMBOLS})
    ) as sim:
        keep_entry = okx_entry(sim, "BTC/USDT")
        run_file(
            path,
            {
                "keep": keep_entry,
                "edit": okx_entry(sim, "ETH/USDT", "SOL/USDT"),
                "gone": okx_entry(sim, "LTC/USDT"),
            },
        )
        run = Run(path)
        try:
            keep = await sim.okx.wait_subscribed("trades:BTC-USDT", 20)
            edit = await sim.okx.wait_subscribed("trades:ETH-USDT", 20)
            assert await sim.okx.wait_subscribed("trades:SOL-USDT", 20) is edit
            gone = await sim.okx.wait_subscribed("trades:LTC-USDT", 20)
            before = connections_of(run.manager)
            opened = sim.okx.connections_total
            run_file(
                path,
                {
                    "keep": keep_entry,
                    "edit": okx_entry(sim, "ETH/USDT", "XRP/USDT"),
                    "new": okx_entry(sim, "DOGE/USDT"),
                },
            )
            sighup()
            outcome = await run.next_outcome()
            assert outcome.trigger == "SIGHUP" and outcome.applied and outcome.plan is not None
            plan = outcome.plan
            assert (plan.added, plan.removed, plan.changed, plan.replaced, plan.unchanged) == (
                ("new",),
                ("gone",),
                ("edit",),
                (),
                ("keep",),
            )
            assert outcome.result is not None and outcome.result.ok
            assert [(s.target, s.kind) for s in outcome.result.steps] == [
                ("gone", "removed"),
                ("new", "added"),
                ("edit", "changed"),
            ]
            await asyncio.wait_for(gone.closed, 10)  # the removed entry's connection was closed
            await sim.okx.wait_subscribed("trades:DOGE-USDT", 20)  # the added one connected
            assert await sim.okx.wait_subscribed("trades:XRP-USDT", 10) is edit  # on the running connection
            await sim.okx.wait_until(lambda: "trades:SOL-USDT" not in edit.subscriptions, 10)
            assert "trades:ETH-USDT" in edit.subscriptions
            assert not keep.closed.done() and not edit.closed.done()
            assert sim.okx.connections_total == opened + 1  # the new entry's only: nobody else reconnected
            after = connections_of(run.manager)
            assert after["keep"] == before["keep"] and after["edit"] == before["edit"]
            assert set(after) == {"keep", "edit", "new"}
            assert set(run.manager.config.exchanges) == {"keep", "edit", "new"}
            # the status judges the new entries: "gone" is not reported missing, "new" would be if it were
            assert run.surfaces[0].service.enabled == ("keep", "edit", "new")
        finally:
            result = await run.finish()
    assert result.exit_code == EXIT_OK and result.reloads is not None
    assert (result.reloads.applied, result.reloads.refused, result.reloads.failed_steps) == (1, 0, 0)


@pytest.mark.integration
@pytest.mark.timeout(90)
async def test_a_file_with_errors_is_refused_with_every_error_and_the_running_one_stays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    path = tmp_path / "c.yaml"
    async with Simulator(
        exchanges=["okx"], mode="synthetic", config=SimConfig(symbols={"okx": OKX_SYMBOLS})
    ) as sim:
        run_file(path, {"keep": okx_entry(sim, "BTC/USDT")})
        run = Run(path)
        try:
            keep = await sim.okx.wait_subscribed("trades:BTC-USDT", 20)
            opened = sim.okx.connections_total
            before = connections_of(run.manager)
            # two wrong fields, and a valid new entry that must not be started either
            run_file(
                path,
                {"keep": okx_entry(sim, "BTCUSDT"), "new": okx_entry(sim, "DOGE/USDT")},
                consumer_queue_size=0,
            )
            sighup()
            outcome = await run.next_outcome()
            assert not outcome.applied and outcome.plan is None and len(outcome.errors) == 2
            assert outcome.errors[0].startswith("exchanges.keep.symbols[0]: 'BTCUSDT' is not a unified")
            assert outcome.errors[1].startswith("consumer_queue_size: ")
            (record,) = [
                r for r in caplog.records if r.levelno == logging.ERROR and "refused" in r.getMessage()
            ]
            assert (
                "exchanges.keep.symbols[0]" in record.getMessage()
                and "consumer_queue_size" in record.getMessage()
            )
            assert "2 problems" in record.getMessage()
            assert set(run.manager.feeds) == {"keep"} and connections_of(run.manager) == before
            assert sim.okx.connections_total == opened and not keep.closed.done()
            assert all("DOGE-USDT" not in k for c in sim.okx.connections.values() for k in c.subscriptions)
            # fixed: the next SIGHUP applies it over the configuration that kept running
            run_file(path, {"keep": okx_entry(sim, "BTC/USDT"), "new": okx_entry(sim, "DOGE/USDT")})
            sighup()
            fixed = await run.next_outcome()
            assert fixed.applied and fixed.plan is not None and fixed.plan.added == ("new",)
            assert fixed.plan.unchanged == ("keep",)
            await sim.okx.wait_subscribed("trades:DOGE-USDT", 20)
        finally:
            result = await run.finish()
    assert result.reloads is not None
    assert (result.reloads.refused, result.reloads.applied) == (1, 1)
    assert result.reloads.last_error is not None and "consumer_queue_size" in result.reloads.last_error
    report = " ".join(result.report.split())  # long lines are wrapped
    assert "configuration reloads" in report and "applied 1, refused 1, failed steps 0" in report
    assert "last error: invalid configuration in" in report and "consumer_queue_size" in report


@pytest.mark.integration
@pytest.mark.timeout(90)
async def test_an_entry_that_cannot_start_is_left_out_and_retried_and_a_refused_replacement_restores_the_old(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.yaml"
    async with Simulator(
        exchanges=["okx"], mode="synthetic", config=SimConfig(symbols={"okx": OKX_SYMBOLS})
    ) as sim:
        run_file(path, {"keep": okx_entry(sim, "BTC/USDT")})
        run = Run(path)
        try:
            first = await sim.okx.wait_subscribed("trades:BTC-USDT", 20)
            # "bad" lists a symbol the exchange does not; "keep" is replaced (reconnect differs) by settings
            # whose symbols the exchange does not list either; "good" is fine
            run_file(
                path,
                {
                    "keep": okx_entry(sim, "BTC/USDT", "NOPE/USDT", reconnect={"max_delay_s": 5}),
                    "bad": okx_entry(sim, "NOPE/USDT"),
                    "good": okx_entry(sim, "SOL/USDT"),
                },
            )
            sighup()
            outcome = await run.next_outcome()
            assert outcome.applied and outcome.result is not None
            steps = {s.target: s for s in outcome.result.steps}
            assert steps["good"].ok and not steps["bad"].ok and not steps["keep"].ok
            assert steps["bad"].error is not None and "NOPE/USDT" in steps["bad"].error
            assert steps["keep"].detail == "new settings refused; old entry started again"
            await sim.okx.wait_subscribed("trades:SOL-USDT", 20)
            await asyncio.wait_for(first.closed, 10)  # "keep" was stopped for the replacement ...
            again = await sim.okx.wait_subscribed("trades:BTC-USDT", 20)  # ... and runs again, as before
            assert again is not first
            assert set(run.manager.feeds) == {"keep", "good"}
            reloader_view = outcome.result.running
            assert set(reloader_view.exchanges) == {"keep", "good"}  # "bad" does not run
            assert reloader_view.exchanges["keep"].reconnect.max_delay_s == 30.0  # the old settings run
            # the same file again: what did not apply is tried again; what did is left alone
            sighup()
            retry = await run.next_outcome()
            assert retry.plan is not None
            assert (retry.plan.added, retry.plan.replaced, retry.plan.unchanged) == (
                ("bad",),
                ("keep",),
                ("good",),
            )
        finally:
            result = await run.finish()
    assert result.reloads is not None and result.reloads.applied == 2 and result.reloads.failed_steps == 4


@pytest.mark.integration
@pytest.mark.timeout(90)
async def test_serve_with_watch_reloads_a_changed_file_once(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    clock = FakeClock()
    async with Simulator(
        exchanges=["okx"], mode="synthetic", config=SimConfig(symbols={"okx": OKX_SYMBOLS})
    ) as sim:
        run_file(path, {"a": okx_entry(sim, "BTC/USDT")})
        run = Run(path, clock=clock, watch_interval_s=1.0)
        try:
            conn = await sim.okx.wait_subscribed("trades:BTC-USDT", 20)  # long after the watcher started
            run_file(path, {"a": okx_entry(sim, "BTC/USDT", "ETH/USDT")})
            await clock.advance(1.0)  # seen
            assert run.outcomes.empty()
            await clock.advance(1.0)  # stable: reloaded
            outcome = await run.next_outcome()
            assert outcome.trigger == "watch" and outcome.plan is not None and outcome.plan.changed == ("a",)
            assert await sim.okx.wait_subscribed("trades:ETH-USDT", 20) is conn
            for _ in range(3):
                await clock.advance(1.0)
        finally:
            result = await run.finish()
    assert result.reloads is not None
    assert (result.reloads.requests, result.reloads.applied) == (1, 1) and run.outcomes.empty()
