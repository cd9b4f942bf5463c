"""One immutable status snapshot: everything every status view shows (HTTP documents, WebSocket push,
dashboard, Prometheus, Redis), taken once per interval from the engine's statistics snapshots.

Nothing here holds a live reference into the engine: a :class:`StatusSnapshot` is frozen, and the views
read only it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptolink.bus import BusStats
from cryptolink.engine import ConnectionEvent
from cryptolink.manager import ManagerStats
from cryptolink.report import ReportRow
from cryptolink.rest.stats import RestManagerStats
from cryptolink.status.host import HostFigures

if TYPE_CHECKING:
    from cryptolink.cluster.worker import WorkerStatus
    from cryptolink.rest.budget import BudgetStats
    from cryptolink.sinks.nats import NatsSinkStats

__all__ = ["EventRecord", "StatusSnapshot"]


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A connection event with its position in the status service's event ring (``seq`` starts at 1 and
    grows by one per event, so ``/api/events?since=N`` returns the events after ``N``)."""

    seq: int
    event: ConnectionEvent


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    """The state of one cryptolink instance at one instant.

    Attributes:
        instance_id: the instance's name (``status.instance_id``, default ``<hostname>-<pid>``).
        taken_ns: wall time of the snapshot, epoch ns.
        started_ns: wall time the instance started, epoch ns.
        enabled: the enabled entry names of the configuration (an enabled entry that is not running is
            unhealthy).
        stats: the manager's statistics snapshot (per feed, connection, book; gates; REST budgets).
        rows: the connection report's rows (quality, latency, uptime per connection).
        events: the latest connection events, oldest first (at most :data:`RECENT_EVENTS`).
        host: CPU, memory and disk.
        bus: the event bus's counters (published, per consumer delivered and dropped).
        push_dropped: push messages dropped for WebSocket clients too slow to read them.
        events_evicted: connection events pushed out of the service's bounded event ring by newer ones (no
            longer served by ``/api/events``).
        snapshot_errors: passes of the snapshot loop that failed (logged with their traceback; the loop goes on
            and the views keep the previous snapshot until a pass succeeds).
        push_clients_dropped: WebSocket clients closed because they did not take a push within the send timeout.
        push_clients_refused: WebSocket clients refused because :data:`~cryptolink.status.service.MAX_PUSH_CLIENTS`
            were connected.
        host_timeouts: host readings that did not finish within their timeout (the previous figures were kept).
        rest: the REST manager's statistics (members, groups, budgets), ``None`` without a REST manager.
        rest_budgets: every rate budget of the process, each once: ``rest.budgets`` when there is a REST manager
            (its budgets are the process's, shared with the engine's REST gateways), else those of the
            ``budgets`` provider of the status service (the engine's alone); empty without either. The views read
            the budgets here, never ``rest.budgets``, so nothing is shown twice.
        nats: the NATS sink's counters (``None``: no ``nats:`` section).
        worker: this process's scale-out worker state (``None``: not a worker; ``nats.cluster.enabled``).
    """

    instance_id: str
    taken_ns: int
    started_ns: int
    enabled: tuple[str, ...]
    stats: ManagerStats
    rows: tuple[ReportRow, ...]
    events: tuple[EventRecord, ...]
    host: HostFigures
    bus: BusStats
    push_dropped: int = 0
    events_evicted: int = 0
    snapshot_errors: int = 0
    push_clients_dropped: int = 0
    push_clients_refused: int = 0
    host_timeouts: int = 0
    rest: RestManagerStats | None = None
    rest_budgets: tuple[BudgetStats, ...] = ()
    nats: NatsSinkStats | None = None
    worker: WorkerStatus | None = None


RECENT_EVENTS = 50
"""Connection events carried by every snapshot (the dashboard's list; ``/api/events`` has more)."""
