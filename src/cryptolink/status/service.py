""":class:`StatusService`: takes the status snapshot every ``snapshot_interval_s``, keeps the bounded ring of
connection events, pushes to WebSocket clients every ``push_interval_s`` and at once on a state change, and
logs the connection report every ``report_interval_s``.

It reads the engine only through :meth:`ExchangeManager.snapshot` (immutable statistics, one pass over the
feeds per interval) and the manager's event listener (connection events, which are rare: state changes,
reconnects, stale streams; ``data_received`` is sampled). Nothing here runs per frame.

Push clients are bounded queues: a client that does not read keeps only the newest messages; every message
dropped for it is counted (``push_dropped`` in the snapshot and ``/metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections import deque
from collections.abc import Callable
from typing import Any

from cryptolink.clock import Clock, SystemClock
from cryptolink.config import StatusConfig
from cryptolink.engine import ConnectionEvent, ConnectionEventType
from cryptolink.manager import ExchangeManager, report_sections
from cryptolink.report import render_report
from cryptolink.status.documents import push_message
from cryptolink.status.host import HostSampler
from cryptolink.status.snapshot import RECENT_EVENTS, EventRecord, StatusSnapshot

__all__ = ["PUSH_QUEUE_SIZE", "PushClient", "StatusService", "default_instance_id"]

log = logging.getLogger("cryptolink.status")

PUSH_QUEUE_SIZE = 4
"""Push messages kept per WebSocket client that has not read them yet (the oldest go first)."""

SnapshotListener = Callable[[StatusSnapshot], None]


def default_instance_id() -> str:
    """``<hostname>-<pid>``."""
    return f"{socket.gethostname()}-{os.getpid()}"


class PushClient:
    """One WebSocket client's bounded queue of push messages (see the module docstring)."""

    __slots__ = ("_queue", "dropped")

    def __init__(self, maxsize: int = PUSH_QUEUE_SIZE) -> None:
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize)
        self.dropped = 0
        """Messages dropped because the client had not read the older ones."""

    def offer(self, message: dict[str, Any]) -> int:
        """Queue ``message``; returns how many older messages were dropped to make room (0 or 1)."""
        dropped = 0
        if self._queue.full():
            self._queue.get_nowait()
            dropped = 1
            self.dropped += 1
        self._queue.put_nowait(message)
        return dropped

    async def get(self) -> dict[str, Any]:
        """The next message (waits for one)."""
        return await self._queue.get()


class StatusService:
    """See the module docstring.

    Args:
        manager: the running manager.
        config: the ``status`` section (intervals, ring size).
        enabled: the enabled entry names of the configuration (an enabled entry that is not running is
            reported unhealthy).
        clock: time source (wall ns for timestamps).
        host: the host sampler (default: measures the working directory's filesystem).
        instance_id: default :func:`default_instance_id`, or ``config.instance_id``.
    """

    def __init__(
        self,
        manager: ExchangeManager,
        config: StatusConfig | None = None,
        *,
        enabled: tuple[str, ...] | None = None,
        clock: Clock | None = None,
        host: HostSampler | None = None,
        instance_id: str | None = None,
    ) -> None:
        self.manager = manager
        self.config = config or StatusConfig()
        self.enabled = enabled if enabled is not None else tuple(manager.config.enabled_exchanges())
        self._clock = clock or SystemClock()
        self._host = host or HostSampler()
        self.instance_id = instance_id or self.config.instance_id or default_instance_id()
        self.started_ns = self._clock.time_ns()
        self._events: deque[EventRecord] = deque(maxlen=self.config.events_kept)
        self._seq = 0
        self.events_evicted = 0
        self._clients: set[PushClient] = set()
        self.push_dropped = 0
        self.pushes = 0
        self._listeners: list[SnapshotListener] = []
        self.listener_errors = 0
        self._wake = asyncio.Event()
        self._state_changed = False
        self._latest: StatusSnapshot | None = None
        self._task: asyncio.Task[None] | None = None
        self.reports_logged = 0

    # ----------------------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Listen to connection events and start the snapshot loop (idempotent)."""
        if self._task is not None:
            return
        self.manager.add_event_listener(self._on_event)
        self._task = asyncio.create_task(self._run(), name="status-snapshots")

    async def stop(self) -> None:
        """Stop the loop and take the last snapshot (the views keep serving it)."""
        self.manager.remove_event_listener(self._on_event)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.refresh()

    # -------------------------------------------------------------------------------------------- reading
    @property
    def latest(self) -> StatusSnapshot:
        """The latest snapshot (taken now if none was taken yet)."""
        return self._latest if self._latest is not None else self.refresh()

    def refresh(self) -> StatusSnapshot:
        """Take a snapshot now, make it the latest and hand it to the snapshot listeners."""
        stats, rows = self.manager.snapshot()
        snap = StatusSnapshot(
            instance_id=self.instance_id,
            taken_ns=self._clock.time_ns(),
            started_ns=self.started_ns,
            enabled=self.enabled,
            stats=stats,
            rows=tuple(rows),
            events=tuple(self._events)[-RECENT_EVENTS:],
            host=self._host.sample(),
            bus=self.manager.bus.stats(),
            push_dropped=self.push_dropped,
            events_evicted=self.events_evicted,
        )
        self._latest = snap
        for listener in tuple(self._listeners):
            try:
                listener(snap)
            except Exception:
                self.listener_errors += 1
                log.exception("status snapshot listener failed")
        return snap

    def events(self, since: int = 0) -> list[EventRecord]:
        """Kept events with ``seq > since``, oldest first."""
        return [r for r in self._events if r.seq > since]

    def report_text(self, snap: StatusSnapshot | None = None) -> str:
        """The connection report of ``snap`` (default the latest)."""
        snap = snap or self.latest
        return render_report(snap.rows, sections=report_sections(snap.stats))

    def add_snapshot_listener(self, listener: SnapshotListener) -> None:
        """Call ``listener(snapshot)`` after every snapshot (on the event loop; keep it quick, it must not
        block: schedule I/O as a task). Exceptions are logged and counted in :attr:`listener_errors`."""
        self._listeners.append(listener)

    # ----------------------------------------------------------------------------------------------- push
    def connect_client(self) -> PushClient:
        """Register a push client; it receives the latest message at once, then every push."""
        client = PushClient()
        self._clients.add(client)
        client.offer(self._message(self.latest))
        return client

    def _message(self, snap: StatusSnapshot) -> dict[str, Any]:
        message = push_message(snap)
        message["data"]["push_interval_s"] = self.config.push_interval_s  # the page's staleness bound
        return message

    def disconnect_client(self, client: PushClient) -> None:
        """Stop pushing to ``client``."""
        self._clients.discard(client)

    @property
    def clients(self) -> int:
        """Connected push clients."""
        return len(self._clients)

    def push(self, snap: StatusSnapshot) -> None:
        """Send ``snap``'s push message to every client."""
        if not self._clients:
            return
        message = self._message(snap)
        self.pushes += 1
        for client in tuple(self._clients):
            self.push_dropped += client.offer(message)

    # ---------------------------------------------------------------------------------------------- loop
    def _on_event(self, event: ConnectionEvent) -> None:
        if event.type is ConnectionEventType.DATA_RECEIVED:
            return  # sampled throughput notes: counted in the statistics, not kept as events
        self._seq += 1
        if len(self._events) == self._events.maxlen:
            self.events_evicted += 1
        self._events.append(EventRecord(self._seq, event))
        if event.type is ConnectionEventType.STATE_CHANGED:
            self._state_changed = True
            self._wake.set()

    async def _run(self) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        now = loop.time()
        next_push = now + cfg.push_interval_s
        next_report = now + cfg.report_interval_s if cfg.report_interval_s > 0 else float("inf")
        while True:
            snap = self.refresh()
            now = loop.time()
            if self._state_changed or now >= next_push:
                self._state_changed = False
                self.push(snap)
                next_push = now + cfg.push_interval_s
            if now >= next_report:
                self._log_report(snap)
                next_report = now + cfg.report_interval_s
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), cfg.snapshot_interval_s)

    def _log_report(self, snap: StatusSnapshot) -> None:
        self.reports_logged += 1
        log.info("connection report\n%s", self.report_text(snap))
