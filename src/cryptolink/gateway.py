"""The REST gateway: how book snapshots, trade backfills, instrument lists and pre-connect requests reach an
exchange's REST API.

The feed and the engine never talk HTTP themselves; they hand a :class:`~cryptolink.exchanges.base.RestRequest`
to a :class:`RestGateway` of that exchange's REST host. :class:`cryptolink.rest.RestClient` implements it on the
exchange's shared :class:`~cryptolink.rest.budget.RateBudget` (the same budgets the REST manager's members draw on).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from cryptolink.exchanges.base import RestRequest

__all__ = ["RestGateway"]


@runtime_checkable
class RestGateway(Protocol):
    """Sends REST GET requests to one exchange host within its rate budget."""

    async def get(
        self, request: RestRequest, *, timeout_s: float | None = None, background: bool = False
    ) -> bytes:
        """Send ``request`` when the budget allows and return the response body.

        Args:
            timeout_s: overrides the gateway's timeout for this request, s.
            background: a request that may wait (trade backfill): it uses a smaller share of the budget so that
                book snapshots keep room.

        Raises:
            cryptolink.rest.RestError: transport error, timeout, or a status other than 200.
        """
        ...
