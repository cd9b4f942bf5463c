"""The REST side of cryptolink.

- :class:`RestClient` (``cryptolink.rest.client``): the engine's gateway for book snapshots, trade backfills and
  instrument lists of one exchange host, within that exchange's rate budget.
- :class:`RestManager` (``cryptolink.rest.manager``): pooled ccxt instances in groups, load-balancing
  strategies, failover, health checks, and the same exact rate budgets, shared across processes through Redis.

``RestManager`` and the modules that import ccxt load on first use, so importing this package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cryptolink.rest.client import RestClient, RestError, RestStats

if TYPE_CHECKING:
    from cryptolink.rest.manager import RestManager

__all__ = ["RestClient", "RestError", "RestManager", "RestStats"]


def __getattr__(name: str) -> Any:
    if name == "RestManager":
        from cryptolink.rest.manager import RestManager

        return RestManager
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
