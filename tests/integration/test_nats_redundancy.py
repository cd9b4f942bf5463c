"""Redundant collectors: two real ``cryptolink run`` processes with the same configuration publish the same
events to one JetStream stream; one is killed (SIGKILL) in the middle of the run. A consumer reading the stream
from its start sees every trade id once and in sequence, and every book delta chained to the one before it: no
gap and no duplicate end to end, across the kill."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections import Counter
from pathlib import Path
from uuid import uuid4

import nats
import nats.js.errors
import pytest
from nats.aio.msg import Msg

from cryptolink.consumer.books import BookRebuilder, Verdict
from cryptolink.consumer.reader import JetStreamReader
from cryptolink.models import BookUpdate, Trade
from cryptolink.simulator import Simulator

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NATS_URL = "nats://127.0.0.1:4222"


async def collector(cfg: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cryptolink.cli",
        "run",
        str(cfg),
        "--no-status",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_killing_one_of_two_collectors_leaves_no_gap_and_no_duplicate(tmp_path: Path) -> None:
    uid = uuid4().hex[:10]
    root, stream = f"red{uid}", f"RED_{uid}"
    nc = await nats.connect(NATS_URL)
    procs: list[asyncio.subprocess.Process] = []
    try:
        async with Simulator(exchanges=["binance"], speed=4.0) as sim:
            ep = sim.endpoints()["binance"]
            cfg = tmp_path / "collector.yaml"
            cfg.write_text(
                "exchanges:\n"
                f"  binance: {{symbols: [BTC/USDT], channels: [trades, book], ws_url: '{ep['ws_url']}', "
                f"rest_url: '{ep['rest_url']}'}}\n"
                "status: {enabled: false}\n"
                f"nats: {{subject_root: {root}, snapshot_interval_s: 1, stream: {{name: {stream}, "
                "storage: memory}}\n"
            )
            # Every publish of both collectors, before JetStream's deduplication: an id seen twice means both
            # collectors are publishing the same events.
            seen: Counter[str] = Counter()
            both = asyncio.Event()
            after_kill: list[str] = []
            killed = asyncio.Event()
            enough = asyncio.Event()

            async def on_publish(msg: Msg) -> None:
                ident = (msg.headers or {}).get("Nats-Msg-Id", "")
                seen[ident] += 1
                if seen[ident] == 2:
                    both.set()
                if killed.is_set() and ident not in after_kill:
                    after_kill.append(ident)
                    if len(after_kill) >= 40:
                        enough.set()

            await nc.subscribe(f"{root}.trades.>", cb=on_publish)
            procs.append(await collector(cfg))
            procs.append(await collector(cfg))
            await asyncio.wait_for(both.wait(), 60)
            await asyncio.sleep(1.0)  # both publishing for a while: books live on both, snapshots and deltas
            procs[0].send_signal(signal.SIGKILL)
            await procs[0].wait()
            killed.set()
            await asyncio.wait_for(enough.wait(), 60)  # the survivor goes on publishing new trades alone
            procs[1].send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(procs[1].communicate(), 30)
            assert procs[1].returncode == 0, err.decode()[-2000:]
        rebuilder = BookRebuilder()
        verdicts: Counter[Verdict] = Counter()
        trade_ids: list[int] = []
        book_events = 0
        async with JetStreamReader(
            f"check{uid}", nc=nc, stream=stream, subject_root=root, until_caught_up=True
        ) as reader:
            async for _, event, _ in reader:
                verdicts[rebuilder.feed(event)] += 1
                if isinstance(event, Trade):
                    assert event.sequence is not None
                    trade_ids.append(event.sequence)
                elif isinstance(event, BookUpdate):
                    book_events += 1
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await nc.jetstream().delete_stream(stream)
        await nc.close()
    stats = rebuilder.stats()
    # trades: every id once, contiguous from the first to the last
    # (stream order is first-arrival order: a collector that starts late may store an older id after a newer one)
    ids = sorted(trade_ids)
    assert len(ids) > 40 and ids == list(range(ids[0], ids[0] + len(ids)))
    assert stats.trade_ids_missing == 0 and stats.duplicates["trades"] == 0
    # books: one snapshot to start from, every delta chained, nothing missed; both collectors' copies merged
    assert book_events > 10 and stats.book_gaps == 0 and stats.deltas_skipped == 0
    assert verdicts[Verdict.GAP] == 0 and verdicts[Verdict.WAITING] == 0 and stats.books_live == 1
    assert max(seen.values()) == 2  # both collectors did publish the same events (deduplicated above)
