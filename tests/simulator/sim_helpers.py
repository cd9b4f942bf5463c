"""Shared helpers for simulator tests: short-timing configs, bounded waits on raw WebSocket clients, an
independent OKX book/checksum client and free port runs."""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import replace
from decimal import Decimal
from typing import Any

import aiohttp

from cryptolink.simulator import BINANCE_SPOT_RULES, BINANCE_USDM_RULES, OKX_RULES, SimConfig


def fast_config(**overrides: Any) -> SimConfig:
    """Default rules with generous limits; per-exchange overrides as ``binance={...}``, ``okx={...}``."""
    rules = {
        "binance": replace(BINANCE_SPOT_RULES, max_in_msgs_per_s=50),
        "binanceusdm": replace(BINANCE_USDM_RULES),
        "okx": replace(OKX_RULES),
    }
    for exch, kw in overrides.items():
        rules[exch] = replace(rules[exch], **kw)
    return SimConfig(rules=rules, synthetic_rate_hz=400.0)


async def recv_json(ws: aiohttp.ClientWebSocketResponse, within_s: float = 5.0) -> Any:
    """Next text frame decoded as JSON (fails on close or timeout)."""
    msg = await asyncio.wait_for(ws.receive(), within_s)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def recv_until(ws: aiohttp.ClientWebSocketResponse, pred: Any, within_s: float = 5.0) -> Any:
    """First JSON frame for which ``pred(frame)`` is true."""

    async def loop() -> Any:
        while True:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            frame = json.loads(msg.data) if msg.data not in ("pong",) else msg.data
            if pred(frame):
                return frame

    return await asyncio.wait_for(loop(), within_s)


async def recv_close(ws: aiohttp.ClientWebSocketResponse, within_s: float = 5.0) -> aiohttp.WSMessage:
    """Read until the socket closes; returns the CLOSE/CLOSED/ERROR message (close code in
    ``ws.close_code``)."""

    async def loop() -> aiohttp.WSMessage:
        while True:
            msg = await ws.receive()
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                return msg

    return await asyncio.wait_for(loop(), within_s)


def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ (0xEDB88320 if c & 1 else 0)
        table.append(c)
    return table


_CRC_TABLE = _crc_table()


def crc32_ref(data: bytes) -> int:
    """Reflected CRC-32 (poly 0xEDB88320), written out here to check the server independently of zlib."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc ^ 0xFFFFFFFF


class OkxClientBook:
    """An OKX ``books`` client: applies snapshot/update data as the docs describe and checks checksums."""

    def __init__(self) -> None:
        self.bids: dict[Decimal, tuple[str, str]] = {}
        self.asks: dict[Decimal, tuple[str, str]] = {}

    def apply(self, data: dict[str, Any]) -> None:
        for side, book in (("bids", self.bids), ("asks", self.asks)):
            for p, sz, *_ in data[side]:
                if Decimal(sz) == 0:
                    book.pop(Decimal(p), None)
                else:
                    book[Decimal(p)] = (p, sz)

    def checksum(self) -> int:
        bids = [self.bids[k] for k in sorted(self.bids, reverse=True)[:25]]
        asks = [self.asks[k] for k in sorted(self.asks)[:25]]
        parts: list[str] = []
        for i in range(25):
            if i < len(bids):
                parts += bids[i]
            if i < len(asks):
                parts += asks[i]
        v = crc32_ref(":".join(parts).encode())
        return v - 2**32 if v >= 2**31 else v


def free_port_run(n: int) -> int:
    """A port N such that N..N+n-1 are all free on 127.0.0.1 right now."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base: int = probe.getsockname()[1]
        if base + n > 65535:
            continue
        socks = [socket.socket() for _ in range(n)]
        try:
            for i, s in enumerate(socks):
                s.bind(("127.0.0.1", base + i))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return base
    raise RuntimeError(f"no run of {n} free ports")
