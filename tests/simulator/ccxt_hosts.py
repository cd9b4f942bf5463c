"""Point a ccxt (or ccxt.pro) client at the simulator by host replacement only: what every ccxt test does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def point_at(ex: Any, hosts: Mapping[str, str]) -> Any:
    """``ex`` with every URL string of ``ex.urls`` whose prefix is a real base URL of ``hosts`` (the simulator's
    printed ``{real: local}`` map) moved to its local base, longest real host first
    (``wss://stream.binance.com:9443`` before ``wss://stream.binance.com``); ccxt's ``{hostname}`` template is
    filled in first, as ccxt does when it sends (Bybit, Bitget, HTX). Nothing else changes: default options."""
    reals = sorted(hosts, key=len, reverse=True)
    hostname = getattr(ex, "hostname", None)

    def move(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        if isinstance(value, list):
            return [move(v) for v in value]
        if isinstance(value, str):
            if hostname:
                value = value.replace("{hostname}", hostname)
            for real in reals:
                if value == real or value.startswith(real + "/"):
                    return hosts[real] + value[len(real) :]
        return value

    ex.urls = move(ex.urls)
    return ex
