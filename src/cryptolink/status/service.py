""":class:`StatusService`: takes the status snapshot every ``snapshot_interval_s``, keeps the bounded ring of
connection events, pushes to WebSocket clients every ``push_interval_s`` and soon after a state change, and
logs the connection report every ``report_interval_s``.

It reads the engine only through :meth:`ExchangeManager.snapshot` (immutable statistics, one pass over the
feeds per interval) and the manager's event listener (connection events, which are rare: state changes,
reconnects, stale streams; ``data_received`` is sampled). Nothing here runs per frame. The host figures (CPU,
memory, disk) are read in a worker thread with a timeout (:class:`~cryptolink.status.host.HostReader`).

**The loop never dies.** A pass that fails (the engine's snapshot, a document, the report) is counted
(``snapshot_errors`` in the snapshot and ``/metrics``) and logged with its traceback (the first failure, then at
most once a minute), and the next pass runs on time; the views keep the last good snapshot, whose age
``/healthz`` shows and ``/readyz`` judges (503 when older than :data:`STALE_AFTER_INTERVALS` intervals).
:meth:`StatusService.stop` never raises.

**Push.** A state change is pushed at once, but at most one such push per :data:`PUSH_DEBOUNCE_S`: the changes
that follow within that window go out together in the next push. The message is encoded once per push and the
same text is queued for every client. Push clients are bounded queues: a client that does not read keeps only
the newest messages; every message dropped for it is counted (``push_dropped``). A client whose socket does not
take a message within :attr:`StatusService.send_timeout_s` is closed and counted (``push_clients_dropped``); at
most :data:`MAX_PUSH_CLIENTS` are connected at once (more are refused and counted: ``push_clients_refused``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
from collections import deque
from collections.abc import Callable
from itertools import islice
from typing import TYPE_CHECKING, Any

import msgspec

from cryptolink.clock import Clock, SystemClock
from cryptolink.config import StatusConfig
from cryptolink.engine import ConnectionEvent, ConnectionEventType
from cryptolink.manager import ExchangeManager, report_sections
from cryptolink.report import render_report
from cryptolink.rest.stats import RestManagerStats
from cryptolink.status.documents import push_message
from cryptolink.status.host import HOST_SAMPLE_TIMEOUT_S, HostFigures, HostReader, HostSampler
from cryptolink.status.snapshot import RECENT_EVENTS, EventRecord, StatusSnapshot

if TYPE_CHECKING:
    from cryptolink.cluster.worker import WorkerStatus
    from cryptolink.rest.budget import BudgetStats
    from cryptolink.sinks.nats import NatsSinkStats

__all__ = [
    "ERROR_LOG_INTERVAL_S",
    "MAX_PUSH_CLIENTS",
    "PUSH_DEBOUNCE_S",
    "PUSH_QUEUE_SIZE",
    "STALE_AFTER_INTERVALS",
    "BudgetsProvider",
    "ErrorThrottle",
    "NatsProvider",
    "PushClient",
    "PushSchedule",
    "RestProvider",
    "StatusService",
    "WorkerProvider",
    "default_instance_id",
    "send_timeout_s",
]

log = logging.getLogger("cryptolink.status")

PUSH_QUEUE_SIZE = 4
"""Push messages kept per WebSocket client that has not read them yet (the oldest go first)."""

MAX_PUSH_CLIENTS = 128
"""WebSocket clients connected at once; more are refused (below the server's connection bound, so the API
stays reachable)."""

PUSH_DEBOUNCE_S = 0.25
"""Shortest time between two pushes caused by state changes, s."""

ERROR_LOG_INTERVAL_S = 60.0
"""A failing snapshot pass is logged the first time, then at most once per this many seconds."""

STALE_AFTER_INTERVALS = 3
"""``/readyz`` calls the status snapshot stale when it is older than this many ``snapshot_interval_s``."""

_encode = msgspec.json.Encoder().encode

SnapshotListener = Callable[[StatusSnapshot], None]

RestProvider = Callable[[], RestManagerStats | None]
"""The REST manager's statistics (``RestManager.stats``); ``None``: no REST manager now."""

BudgetsProvider = Callable[[], "tuple[BudgetStats, ...]"]
"""Every rate budget of the process (``RateBudgets.stats``), for a process without a REST manager."""

NatsProvider = Callable[[], "NatsSinkStats"]
"""The NATS sink's counters (``NatsSink.stats``)."""

WorkerProvider = Callable[[], "WorkerStatus"]
"""This process's scale-out worker state (``Worker.status``)."""


def default_instance_id() -> str:
    """``<hostname>-<pid>``."""
    return f"{socket.gethostname()}-{os.getpid()}"


def send_timeout_s(push_interval_s: float) -> float:
    """How long one push may take to reach a WebSocket client before the client is dropped, s: two push periods,
    at least 1 s (10 s at the default 5 s period)."""
    return max(1.0, 2.0 * push_interval_s)


class PushClient:
    """One WebSocket client's bounded queue of encoded push messages (see the module docstring), and the
    request to close it (:meth:`close`, at the service's stop)."""

    __slots__ = ("_queue", "closing", "dropped")

    def __init__(self, maxsize: int = PUSH_QUEUE_SIZE) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize)
        self.dropped = 0
        """Messages dropped because the client had not read the older ones."""
        self.closing = asyncio.Event()
        """Set when the service asks the client's handler to close it (the service is stopping)."""

    def offer(self, message: str) -> int:
        """Queue ``message`` (JSON text); returns how many older messages were dropped to make room (0 or 1)."""
        dropped = 0
        if self._queue.full():
            self._queue.get_nowait()
            dropped = 1
            self.dropped += 1
        self._queue.put_nowait(message)
        return dropped

    async def get(self) -> str:
        """The next message (waits for one)."""
        return await self._queue.get()

    def close(self) -> None:
        """Ask the client's handler to close the socket (sets :attr:`closing`)."""
        self.closing.set()


class PushSchedule:
    """When the snapshot loop pushes (pure: times are the caller's monotonic seconds): every ``interval_s``, and
    after a state change at once unless a state-change push went out less than ``debounce_s`` ago, in which
    case at the end of that window (one push carries every change of the window).

    Args:
        interval_s: the push period, s.
        debounce_s: shortest time between two state-change pushes, s.
    """

    def __init__(self, interval_s: float, debounce_s: float = PUSH_DEBOUNCE_S) -> None:
        self.interval_s = interval_s
        self.debounce_s = debounce_s
        self.changed = False
        """A state change is waiting to be pushed."""
        self._next_periodic = interval_s
        self._last_push = -math.inf

    def start(self, now: float) -> None:
        """The first periodic push is one period after ``now``."""
        self._next_periodic = now + self.interval_s

    def state_changed(self) -> None:
        """A connection changed state: push soon."""
        self.changed = True

    def due(self, now: float) -> bool:
        """Whether a push is due at ``now``."""
        return now >= self.deadline()

    def deadline(self) -> float:
        """When the next push is due (monotonic s)."""
        if self.changed:
            return min(self._next_periodic, self._last_push + self.debounce_s)
        return self._next_periodic

    def pushed(self, now: float) -> None:
        """A push went out at ``now``: every change so far is in it; the next periodic one is a period later."""
        self.changed = False
        self._last_push = now
        self._next_periodic = now + self.interval_s


class ErrorThrottle:
    """Whether to log a recurring failure now (pure: times are the caller's monotonic seconds): the first one,
    then at most one per ``interval_s``; :meth:`allow` also says how many were not logged since the last one.

    Args:
        interval_s: shortest time between two logged failures, s.
    """

    def __init__(self, interval_s: float = ERROR_LOG_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._last = -math.inf
        self._quiet = 0

    def allow(self, now: float) -> tuple[bool, int]:
        """``(log it, failures not logged since the last logged one)`` for a failure at ``now``."""
        if now - self._last >= self.interval_s:
            quiet, self._quiet, self._last = self._quiet, 0, now
            return True, quiet
        self._quiet += 1
        return False, self._quiet


class StatusService:
    """See the module docstring.

    Args:
        manager: the running manager.
        config: the ``status`` section (intervals, ring size).
        enabled: the enabled entry names of the configuration (an enabled entry that is not running is
            reported unhealthy).
        clock: time source (wall ns for timestamps and the snapshot's age).
        host: the host sampler (default: measures the working directory's filesystem).
        host_timeout_s: longest wait for one host reading, s (then the previous figures are kept).
        instance_id: default :func:`default_instance_id`, or ``config.instance_id``.
        rest: the REST manager's statistics, read once per snapshot (``RestManager.stats``; ``None``: no REST
            manager). Must be quick and must not block: it runs on the event loop.
        budgets: the process's rate budgets, read once per snapshot when ``rest`` is absent or returns ``None``
            (``RateBudgets.stats``: the engine's REST gateways alone). With a REST manager its ``budgets`` are
            the same set and this provider is not called (see :attr:`StatusSnapshot.rest_budgets`).
        nats: the NATS sink's counters, read once per snapshot (``NatsSink.stats``; ``None``: no NATS sink).
        worker: the scale-out worker's state, read once per snapshot (``Worker.status``; ``None``: not a worker).

    A provider that raises fails the snapshot pass like the engine's own snapshot does (counted in
    ``snapshot_errors``, logged; the views keep the previous snapshot).
    """

    def __init__(
        self,
        manager: ExchangeManager,
        config: StatusConfig | None = None,
        *,
        enabled: tuple[str, ...] | None = None,
        clock: Clock | None = None,
        host: HostSampler | None = None,
        host_timeout_s: float = HOST_SAMPLE_TIMEOUT_S,
        instance_id: str | None = None,
        rest: RestProvider | None = None,
        budgets: BudgetsProvider | None = None,
        nats: NatsProvider | None = None,
        worker: WorkerProvider | None = None,
    ) -> None:
        self.manager = manager
        self.rest = rest
        self.budgets = budgets
        self.nats = nats
        self.worker = worker
        self.config = config or StatusConfig()
        self.enabled = enabled if enabled is not None else tuple(manager.config.enabled_exchanges())
        self._clock = clock or SystemClock()
        self._host = HostReader(host or HostSampler(), host_timeout_s)
        self._host_in_thread = False  # set by start(): from then on the host is read off the loop only
        self.instance_id = instance_id or self.config.instance_id or default_instance_id()
        self.started_ns = self._clock.time_ns()
        self._events: deque[EventRecord] = deque(maxlen=self.config.events_kept)
        self._seq = 0
        self.events_evicted = 0
        self._clients: set[PushClient] = set()
        self._no_clients = asyncio.Event()
        self._no_clients.set()
        self.push_dropped = 0
        self.push_clients_dropped = 0
        self.push_clients_refused = 0
        self.pushes = 0
        self._encoded: tuple[int, str] | None = None  # (taken_ns, push text) of the last encoded snapshot
        self._listeners: list[SnapshotListener] = []
        self.listener_errors = 0
        self.snapshot_errors = 0
        self._errors = ErrorThrottle()
        self._schedule = PushSchedule(self.config.push_interval_s)
        self._wake = asyncio.Event()
        self._latest: StatusSnapshot | None = None
        self._task: asyncio.Task[None] | None = None
        self.reports_logged = 0

    # ----------------------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Read the host once (in a worker thread), listen to connection events and start the snapshot loop
        (idempotent)."""
        if self._task is not None:
            return
        self._host_in_thread = True
        await self._host.read()
        self.manager.add_event_listener(self._on_event)
        self._task = asyncio.create_task(self._run(), name="status-snapshots")

    async def stop(self) -> None:
        """Stop the loop and take the last snapshot (the views keep serving it). Never raises (a failure is
        logged and counted), except :class:`asyncio.CancelledError` when the caller is cancelled."""
        self.manager.remove_event_listener(self._on_event)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            (outcome,) = await asyncio.gather(task, return_exceptions=True)
            if isinstance(outcome, Exception):  # the loop catches everything; this would be a bug
                log.error("status: the snapshot loop had failed", exc_info=outcome)
        try:
            self.refresh()
        except Exception:
            self.snapshot_errors += 1
            log.exception("status: the last snapshot failed; the views keep the previous one")

    # -------------------------------------------------------------------------------------------- reading
    @property
    def latest(self) -> StatusSnapshot:
        """The latest snapshot (taken now if none was taken yet)."""
        return self._latest if self._latest is not None else self.refresh()

    @property
    def latest_or_none(self) -> StatusSnapshot | None:
        """The latest snapshot, ``None`` before the first one (never takes one)."""
        return self._latest

    @property
    def stale_after_s(self) -> float:
        """Age beyond which the snapshot is stale: :data:`STALE_AFTER_INTERVALS` snapshot intervals, s."""
        return STALE_AFTER_INTERVALS * self.config.snapshot_interval_s

    def age_s(self, snap: StatusSnapshot) -> float:
        """How old ``snap`` is now, s (wall clock)."""
        return max(0.0, (self._clock.time_ns() - snap.taken_ns) / 1e9)

    def staleness(self, snap: StatusSnapshot) -> str | None:
        """Why ``snap`` is too old to judge readiness by (``None``: it is fresh enough): older than
        :attr:`stale_after_s` means the snapshot loop has not produced one for three intervals."""
        age = self.age_s(snap)
        if age <= self.stale_after_s:
            return None
        return f"status snapshot stale: {age:.1f} s old (taken every {self.config.snapshot_interval_s:g} s)"

    def refresh(self) -> StatusSnapshot:
        """Take a snapshot now, make it the latest and hand it to the snapshot listeners.

        Raises:
            Exception: whatever the engine's snapshot raised (the latest snapshot stays the previous one).
        """
        stats, rows = self.manager.snapshot()
        recent = tuple(islice(reversed(self._events), RECENT_EVENTS))[::-1]  # never copies the whole ring
        rest = self.rest() if self.rest is not None else None
        if rest is not None:
            rest_budgets = tuple(rest.budgets)  # the process's budgets: the provider's would be the same set
        else:
            rest_budgets = tuple(self.budgets()) if self.budgets is not None else ()
        worker = self.worker() if self.worker is not None else None
        snap = StatusSnapshot(
            instance_id=self.instance_id,
            taken_ns=self._clock.time_ns(),
            started_ns=self.started_ns,
            # a worker must run the shards it holds (entry names = shard ids), not the configuration's entries
            enabled=tuple(sorted(worker.shard_ids)) if worker is not None else self.enabled,
            stats=stats,
            rows=tuple(rows),
            events=recent,
            host=self._host_figures(),
            bus=self.manager.bus.stats(),
            push_dropped=self.push_dropped,
            events_evicted=self.events_evicted,
            snapshot_errors=self.snapshot_errors,
            push_clients_dropped=self.push_clients_dropped,
            push_clients_refused=self.push_clients_refused,
            host_timeouts=self._host.timeouts,
            rest=rest,
            rest_budgets=rest_budgets,
            nats=self.nats() if self.nats is not None else None,
            worker=worker,
        )
        self._latest = snap
        for listener in tuple(self._listeners):
            try:
                listener(snap)
            except Exception:
                self.listener_errors += 1
                log.exception("status snapshot listener failed")
        return snap

    def _host_figures(self) -> HostFigures:
        if self._host_in_thread:
            return self._host.latest
        return self._host.sampler.sample()  # never started (a library use of refresh()): read it here

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
    @property
    def send_timeout_s(self) -> float:
        """How long a push may take to reach a client before the client is dropped, s
        (:func:`send_timeout_s` of ``push_interval_s``)."""
        return send_timeout_s(self.config.push_interval_s)

    def connect_client(self) -> PushClient | None:
        """Register a push client; it receives the latest message at once, then every push. ``None`` (counted
        in :attr:`push_clients_refused`) when :data:`MAX_PUSH_CLIENTS` are connected."""
        if len(self._clients) >= MAX_PUSH_CLIENTS:
            self.push_clients_refused += 1
            return None
        client = PushClient()
        client.offer(self._message(self.latest))
        self._clients.add(client)
        self._no_clients.clear()
        return client

    def _message(self, snap: StatusSnapshot) -> str:
        """The push text of ``snap``, encoded once per snapshot."""
        cached = self._encoded
        if cached is not None and cached[0] == snap.taken_ns:
            return cached[1]
        message: dict[str, Any] = push_message(snap)
        message["data"]["push_interval_s"] = self.config.push_interval_s  # the page's staleness bound
        text = _encode(message).decode()
        self._encoded = (snap.taken_ns, text)
        return text

    def disconnect_client(self, client: PushClient) -> None:
        """Stop pushing to ``client``."""
        self._clients.discard(client)
        if not self._clients:
            self._no_clients.set()

    def drop_slow_client(self, client: PushClient) -> None:
        """Stop pushing to ``client``, which did not take a push within :attr:`send_timeout_s`; counted in
        :attr:`push_clients_dropped`."""
        if client in self._clients:
            self.push_clients_dropped += 1
            log.warning(
                "status: a WebSocket client took no push for %.1f s; closed (%d so far)",
                self.send_timeout_s,
                self.push_clients_dropped,
            )
        self.disconnect_client(client)

    async def close_clients(self, timeout_s: float = 2.0) -> int:
        """Ask every push client's handler to close its socket and wait up to ``timeout_s`` for them to be
        gone; returns how many were still registered after the wait (0 when every handler finished)."""
        for client in tuple(self._clients):
            client.close()
        if self._clients:
            try:
                await asyncio.wait_for(self._no_clients.wait(), timeout_s)
            except TimeoutError:
                log.warning(
                    "status: %d WebSocket client(s) still open after %.1f s", len(self._clients), timeout_s
                )
        return len(self._clients)

    @property
    def clients(self) -> int:
        """Connected push clients."""
        return len(self._clients)

    def push(self, snap: StatusSnapshot) -> None:
        """Send ``snap``'s push message to every client (encoded once, the same text for all)."""
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
            self._schedule.state_changed()
            self._wake.set()

    async def _run(self) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        self._schedule.start(loop.time())
        next_report = loop.time() + cfg.report_interval_s if cfg.report_interval_s > 0 else math.inf
        while True:
            started = loop.time()
            failed = False
            try:
                await self._host.read()  # never raises; at most host_timeout_s
                snap = self.refresh()
                now = loop.time()
                if self._schedule.due(now):
                    self._schedule.pushed(now)
                    self.push(snap)
                if now >= next_report:
                    next_report = now + cfg.report_interval_s
                    self._log_report(snap)
            except Exception:
                failed = True
                self._pass_failed(loop.time())
            await self._sleep_until(started + cfg.snapshot_interval_s, loop, pushes=not failed)

    async def _sleep_until(
        self, next_snapshot: float, loop: asyncio.AbstractEventLoop, *, pushes: bool
    ) -> None:
        """Until ``next_snapshot``, or (``pushes``) a push due earlier: a state change, debounced. After a failed
        pass only ``next_snapshot``: a push that could not go out must not make the loop spin."""
        while True:
            self._wake.clear()
            deadline = min(next_snapshot, self._schedule.deadline()) if pushes else next_snapshot
            timeout = deadline - loop.time()
            if timeout <= 0:
                return
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                return

    def _pass_failed(self, now: float) -> None:
        """Count a failed pass and log it with its traceback, rate-limited (call it in the ``except`` block)."""
        self.snapshot_errors += 1
        allowed, quiet = self._errors.allow(now)
        if allowed:
            log.exception(
                "status: snapshot pass failed (%d failure(s) so far, %d not logged since the last one); the "
                "views keep the previous snapshot and the loop goes on",
                self.snapshot_errors,
                quiet,
            )

    def _log_report(self, snap: StatusSnapshot) -> None:
        self.reports_logged += 1
        log.info("connection report\n%s", self.report_text(snap))
