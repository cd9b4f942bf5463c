"""Point a ccxt (or ccxt.pro) client at the simulator by host replacement only: what every ccxt test does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cryptolink.rest.managed import move_urls


def point_at(ex: Any, hosts: Mapping[str, str]) -> Any:
    """``ex`` with every URL string of ``ex.urls`` whose prefix is a real base URL of ``hosts`` (the simulator's
    printed ``{real: local}`` map) moved to its local base, longest real host first
    (``wss://stream.binance.com:9443`` before ``wss://stream.binance.com``); ccxt's ``{hostname}`` template is
    filled in first, as ccxt does when it sends (Bybit, Bitget, HTX). Nothing else changes: default options.
    The REST manager moves its members' URLs the same way (``rest.managed.move_urls``)."""
    ex.urls = move_urls(ex.urls, hosts, getattr(ex, "hostname", None))
    return ex
