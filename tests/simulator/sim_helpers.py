"""Shared helpers for simulator tests: short-timing configs and bounded waits on raw WebSocket clients."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
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
