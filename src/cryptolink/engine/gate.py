"""The connect gate of one exchange host: its documented connection-rate limit, and probing while it is down.

Every socket a :class:`~cryptolink.engine.connection.ManagedConnection` opens (first connect, reconnect,
make-before-break replacement) first takes a :class:`Permit` from the :class:`ConnectGate` of its exchange and
host (``binance stream.binance.com:9443``); the manager shares one gate per host between all its connections
through :class:`ConnectGates`.

Two rules:

1. **Rate.** At most ``allowed = max(1, floor(limit.max_connects * headroom))`` permits in any
   ``limit.window_s`` (a sliding window, so no window of that length the exchange may use sees more), with
   ``headroom`` 0.9 by default. Waiting connections are served first come, first served. The limit is declared
   by the adapter (``ConnectionPolicy.connect_limit``: Binance 300 connection attempts per 5 minutes per IP,
   OKX 3 connection requests per second per IP; see ``docs/protocols/``). It counts this process only.
2. **Outage probing.** After ``down_after`` (2) consecutive failed opens with no success in between, the host
   is *down*: waiting connections are let through one at a time, as probes, on the gate's own backoff
   schedule (full jitter, bounds 1, 2, 4 ... 30 s by default); the others wait. The first probe that opens a
   socket marks the host up and releases every waiting connection at once, and :meth:`ConnectGate.wait_up`
   wakes those sleeping their own reconnect delay. So during an outage there is one attempt per probe
   interval however many connections exist, and data flows again within one probe interval (<= 30 s) of the
   exchange coming back.

A socket that opens counts as a success here even if the server then closes it without data: the host is
reachable, and the connection's own backoff (:mod:`~cryptolink.engine.backoff`) deals with that server.

Everything runs on the injected :class:`~cryptolink.clock.Clock`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptolink.clock import Clock
from cryptolink.engine.backoff import Backoff, BackoffPolicy
from cryptolink.exchanges.base import ConnectRateLimit

__all__ = ["ConnectGate", "ConnectGates", "ConnectRateLimit", "GateStats", "Permit"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GateStats:
    """One gate at one instant.

    Attributes:
        key: ``"<exchange> <host:port>"``.
        up: ``False`` while the host is judged down (probing).
        down_for_s: how long it has been down, s (``None`` when up).
        consecutive_failures: failed opens since the last success.
        granted: permits handed out since start.
        probes: permits handed out as probes while down.
        outages: times the host went down.
        rate_waits: permits that had to wait for room in the rate window.
        waiting: connections waiting for a permit now.
        allowed: permits allowed per ``window_s`` (``None``: no rate limit).
        window_s: the rate window, s.
    """

    key: str
    up: bool
    down_for_s: float | None
    consecutive_failures: int
    granted: int
    probes: int
    outages: int
    rate_waits: int
    waiting: int
    allowed: int | None
    window_s: float | None


class Permit:
    """The right to open one socket; report its outcome exactly once with :meth:`report`."""

    __slots__ = ("_done", "_gate", "probe")

    def __init__(self, gate: ConnectGate, probe: bool) -> None:
        self._gate = gate
        self.probe = probe
        self._done = False

    def report(self, ok: bool | None) -> None:
        """``True``: the socket opened; ``False``: the open failed; ``None``: abandoned (e.g. the connection
        was stopped). Later calls are ignored."""
        if self._done:
            return
        self._done = True
        self._gate._outcome(self, ok)


class ConnectGate:
    """Rate limit and outage probing for one exchange host (see the module docstring).

    Args:
        key: name used in logs and stats (``"binance 127.0.0.1:9100"``).
        limit: the exchange's connection-rate limit; ``None``: no rate limit.
        clock: time source.
        probe: the probe schedule while down (default: ``BackoffPolicy()``, bounds 1, 2, 4 ... 30 s).
        down_after: consecutive failed opens that mark the host down (>= 1).
        headroom: fraction of ``limit.max_connects`` used (0 < headroom <= 1).
        rng: random source for the probe jitter.

    Raises:
        ValueError: ``down_after < 1`` or ``headroom`` outside (0, 1].
    """

    def __init__(
        self,
        key: str,
        limit: ConnectRateLimit | None,
        clock: Clock,
        *,
        probe: BackoffPolicy | None = None,
        down_after: int = 2,
        headroom: float = 0.9,
        rng: random.Random | None = None,
    ) -> None:
        if down_after < 1:
            raise ValueError("down_after must be >= 1")
        if not 0 < headroom <= 1:
            raise ValueError("headroom must be in (0, 1]")
        self.key = key
        self.limit = limit
        self._clock = clock
        self._down_after = down_after
        self.allowed = max(1, math.floor(limit.max_connects * headroom)) if limit is not None else None
        self._times: deque[float] = deque()
        self._queue: deque[asyncio.Future[None]] = deque()
        self._pump: asyncio.Task[None] | None = None
        self._probe_backoff = Backoff(probe or BackoffPolicy(), rng or random.Random())
        self._up = True
        self._up_event: asyncio.Event | None = None
        self._changed: asyncio.Event | None = None
        self._probe: Permit | None = None
        self._next_probe_at = 0.0
        self._down_since: float | None = None
        self._failures = 0
        self._granted = 0
        self._probes = 0
        self._outages = 0
        self._rate_waits = 0
        self._waiting = 0
        self._rate_logged = False

    # ----------------------------------------------------------------------------------------------- public
    @property
    def up(self) -> bool:
        """``False`` while the host is judged down."""
        return self._up

    async def acquire(self) -> Permit:
        """Wait until this connection may open a socket; return the permit (report its outcome).

        While the host is down this waits for a probe turn or for another probe to succeed; then it waits for
        room in the rate window. Cancellation leaves the gate consistent.
        """
        self._waiting += 1
        try:
            permit = await self._turn()
        finally:
            self._waiting -= 1
        try:
            await self._rate_slot()
        except BaseException:
            permit.report(None)
            raise
        self._granted += 1
        if permit.probe:
            self._probes += 1
        return permit

    async def wait_up(self) -> None:
        """Return when the host is up (at once if it is)."""
        while not self._up:
            await self._event("up").wait()

    def stats(self) -> GateStats:
        """An immutable snapshot."""
        now = self._clock.monotonic()
        window = self.limit.window_s if self.limit is not None else None
        return GateStats(
            key=self.key,
            up=self._up,
            down_for_s=None if self._down_since is None else now - self._down_since,
            consecutive_failures=self._failures,
            granted=self._granted,
            probes=self._probes,
            outages=self._outages,
            rate_waits=self._rate_waits,
            waiting=self._waiting,
            allowed=self.allowed,
            window_s=window,
        )

    # ------------------------------------------------------------------------------------------ internals
    def _event(self, which: str) -> asyncio.Event:
        if which == "up":
            if self._up_event is None:
                self._up_event = asyncio.Event()
                if self._up:
                    self._up_event.set()
            return self._up_event
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def _turn(self) -> Permit:
        while True:
            if self._up:
                return Permit(self, probe=False)
            now = self._clock.monotonic()
            if self._probe is None and now >= self._next_probe_at:
                self._probe = Permit(self, probe=True)
                return self._probe
            changed = asyncio.ensure_future(self._event("changed").wait())
            waits: set[asyncio.Future[object]] = {changed}  # type: ignore[arg-type]
            sleeper: asyncio.Future[None] | None = None
            if self._probe is None:
                sleeper = asyncio.ensure_future(self._clock.sleep(self._next_probe_at - now))
                waits.add(sleeper)  # type: ignore[arg-type]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()
                if sleeper is not None:
                    sleeper.cancel()

    def _room(self, now: float) -> bool:
        allowed = self.allowed
        if allowed is None:
            return True
        assert self.limit is not None
        times = self._times
        horizon = now - self.limit.window_s
        while times and times[0] <= horizon:
            times.popleft()
        return len(times) < allowed

    def _take(self, now: float) -> None:
        if self.allowed is not None:
            self._times.append(now)

    async def _rate_slot(self) -> None:
        now = self._clock.monotonic()
        if not self._queue and self._room(now):
            self._take(now)
            return
        self._rate_waits += 1
        if not self._rate_logged:
            self._rate_logged = True
            _log.info(
                "%s: connect budget of %d per %g s in use; new connections are paced",
                self.key,
                self.allowed,
                self.limit.window_s if self.limit else 0.0,
            )
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(fut)
        if self._pump is None or self._pump.done():
            self._pump = asyncio.ensure_future(self._run_pump())
        await fut

    async def _run_pump(self) -> None:
        queue = self._queue
        while queue:
            while queue and queue[0].done():  # cancelled waiters
                queue.popleft()
            if not queue:
                break
            now = self._clock.monotonic()
            if self._room(now):
                self._take(now)
                queue.popleft().set_result(None)
                continue
            assert self.limit is not None
            await self._clock.sleep(self._times[0] + self.limit.window_s - now)
        self._rate_logged = False

    def _outcome(self, permit: Permit, ok: bool | None) -> None:
        now = self._clock.monotonic()
        if permit is self._probe:
            self._probe = None
        if ok is None:
            self._notify()
            return
        if ok:
            self._failures = 0
            if not self._up:
                down_for = now - (self._down_since or now)
                _log.info(
                    "%s: reachable again after %.1f s down; %d waiting connection(s) released",
                    self.key,
                    down_for,
                    self._waiting,
                )
                self._up = True
                self._down_since = None
                self._probe_backoff.reset()
                self._event("up").set()
            self._notify()
            return
        self._failures += 1
        if self._up and self._failures >= self._down_after:
            self._up = False
            self._outages += 1
            self._down_since = now
            if self._up_event is not None:
                self._up_event.clear()
            self._probe_backoff.reset()
            self._probe_backoff.next_delay()  # the immediate first attempt already happened
            self._next_probe_at = now + self._probe_backoff.next_delay()
            _log.warning(
                "%s: unreachable (%d consecutive failed connects); probing at most every %g s, "
                "other connections wait for a probe to succeed",
                self.key,
                self._failures,
                self._probe_backoff.policy.cap_s,
            )
        elif not self._up and permit.probe:
            self._next_probe_at = now + self._probe_backoff.next_delay()
        self._notify()


class ConnectGates:
    """The gates of one manager, one per (exchange, host:port), created on first use.

    Args:
        clock: time source of every gate.
        probe / down_after / headroom: passed to each :class:`ConnectGate`.
        seed: seed of the probe jitter (``None``: unpredictable).
    """

    def __init__(
        self,
        clock: Clock,
        *,
        probe: BackoffPolicy | None = None,
        down_after: int = 2,
        headroom: float = 0.9,
        seed: int | None = None,
    ) -> None:
        self._clock = clock
        self._probe = probe
        self._down_after = down_after
        self._headroom = headroom
        self._rng = random.Random(seed)
        self._gates: dict[str, ConnectGate] = {}

    def get(
        self, exchange: str, url: str, limit: ConnectRateLimit | None, probe: BackoffPolicy | None = None
    ) -> ConnectGate:
        """The gate of ``exchange`` at ``url``'s host and port, created on first use with ``limit`` and the
        probe schedule ``probe`` (default: the registry's; the manager passes the entry's reconnect policy)."""
        parts = urlsplit(url)
        key = f"{exchange} {parts.netloc or url}"
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = ConnectGate(
                key,
                limit,
                self._clock,
                probe=probe or self._probe,
                down_after=self._down_after,
                headroom=self._headroom,
                rng=random.Random(self._rng.random()),
            )
        return gate

    def stats(self) -> tuple[GateStats, ...]:
        """Every gate's snapshot, sorted by key."""
        return tuple(g.stats() for _, g in sorted(self._gates.items()))
