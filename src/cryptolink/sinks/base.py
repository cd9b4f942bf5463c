"""The :class:`Sink` protocol: a consumer that persists or forwards the bus's events.

The service runs every configured sink the same way: :meth:`Sink.attach` to the bus, :meth:`Sink.run` as a
background task while the manager runs, :meth:`Sink.aclose` after the manager stopped (every buffered event
written or counted as lost), then :meth:`Sink.health` decides the exit code (any loss: 1) and
:meth:`Sink.report_section` adds the sink's part to the final report. JSON Lines files
(:class:`~cryptolink.sinks.jsonl.JsonlSink`) are one sink; a message bus publisher is another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cryptolink.bus import Bus, CallbackHandle
from cryptolink.report import Section

__all__ = ["Sink", "SinkHealth"]


@dataclass(frozen=True, slots=True)
class SinkHealth:
    """What every sink reports, whatever it writes to.

    Attributes:
        name: the sink's name in logs and the report (``jsonl``, ``nats``).
        delivered: events written or acknowledged by the destination.
        lost: events accepted from the bus that will never reach the destination (all causes).
        healthy: the destination currently accepts writes.
        last_error: text of the last failure (``None``: none).
    """

    name: str
    delivered: int
    lost: int
    healthy: bool
    last_error: str | None = None

    @property
    def data_lost(self) -> bool:
        """Something was lost or the destination is failing: the run ends with exit code 1."""
        return self.lost > 0 or not self.healthy


@runtime_checkable
class Sink(Protocol):
    """A consumer of normalized events (trades, tickers, book updates, gaps)."""

    def attach(self, bus: Bus, *, feed: str | None = None, symbol: str | None = None) -> list[CallbackHandle]:
        """Subscribe to ``bus`` (every feed and symbol unless narrowed); return the handles."""
        ...

    async def run(self) -> None:
        """Background work (periodic flushes, reconnects) until cancelled."""
        ...

    async def aclose(self) -> None:
        """Deliver or count everything accepted so far, then release resources. Idempotent."""
        ...

    def health(self) -> SinkHealth:
        """The sink's counters now."""
        ...

    def report_section(self) -> Section:
        """The sink's section of the connection report: what was delivered, what was lost and why."""
        ...
