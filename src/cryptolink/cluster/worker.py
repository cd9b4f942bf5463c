"""A scale-out worker: runs the shards whose leases it holds, and keeps the cluster's work evenly spread.

N workers (processes on any machines that reach one NATS system) given one configuration share its
subscriptions: the configuration is cut into shards (:mod:`cryptolink.cluster.shards`), each shard into
``redundancy`` slots (replicas), and each slot is claimed through a lease in NATS KV
(:mod:`cryptolink.cluster.leases`). A worker runs a shard (``manager.add_exchange(shard.id, shard.config)``) only
while it holds one of the shard's slots, and never two slots of one shard.

**The manager.** The worker adds and removes shards as manager entries at run time; the manager it is given must
run nothing by itself. Build it from :func:`idle_config` (the configuration with every entry ``enabled: false``,
which :meth:`~cryptolink.manager.ExchangeManager.start` then starts nothing of; the configuration loader refuses
such a configuration because it would stream nothing, so it is built with ``model_copy``). :meth:`Worker.start`
starts the manager (idempotent: the trading guards run) and refuses a manager with enabled entries
(:class:`~cryptolink.cluster.leases.ClusterError`); stopping the manager stays its owner's job.

**One round** (every ``renew_every_s``, and early when the KV watcher reports a slot freed, a worker joining or
leaving, or a slot this worker handed over being taken; at most ten rounds per interval):

1. handovers past ``handover_timeout_s``: take the slot back when still free, else stop the shard;
2. heartbeat ``worker.<id>`` (state, lease count and this process's nonce in the value);
3. renew every held lease (compare-and-swap on its revision). A refused renewal (:class:`LeaseLost`) drops the
   lease and stops the shard at once; a NATS failure is counted and retried, the lease being trusted until its
   fencing deadline;
4. read a snapshot of the bucket: the live workers are those with a heartbeat of the same configuration
   fingerprint and not ``stopping`` (peers of another fingerprint are reported, never counted);
5. complete handovers whose slot another worker now holds AND runs (its lease value has ``started_ms``):
   make-before-break, the shard is stopped only then;
6. fair share: with ``S`` slots and ``n`` live workers, the workers ranked by (leases held, descending; id) get
   ``ceil(S/n)`` for the first ``S mod n`` of them and ``floor(S/n)`` for the others, capped at the number of
   shards (:func:`fair_targets`). This refines the plain ``ceil(S/n)``: with it, 2 + 2 leases and a third worker
   joining would stay 2/2/0;
7. above target while some other live worker is below its target (and the free slots do not cover it): release
   the extras (the shards with the most live replicas first) and keep running them (handover);
8. below target: acquire free slots, the shards with the fewest live replicas first (redundancy 2 never leaves
   a shard at 0 while another has 2), ties in an order hashed from the worker id (workers do not all race for
   one key); a slot free for a whole interval (nobody below target took it) is taken even above target, so no
   slot stays unrun; a key naming this worker that it does not hold (a lost create reply, or this worker id's
   previous process) is taken over by compare-and-swap, except while another process uses this worker id (see
   below). A shard whose stop is still in progress is not claimed.

**Stops never block.** A lease lost, fenced, handed over or given back leaves the held set at once; its shard's
stop (``manager.remove_exchange``, which may take seconds while a feed closes its websockets) runs as a
background task of the worker's shard runner: rounds and the fencing task never wait for a stop, so a slow stop
delays no renewal. The runner runs one operation at a time per shard, in order: a shard being stopped is started
again on this worker only once its stop ended. A stop that fails is counted (``stop_failures``) and logged;
:meth:`Worker.aclose` waits for every stop.

**Fencing.** A lease is trusted until ``renewed_at + ttl - renew_every_s`` on this process's monotonic clock,
measured from the moment its last confirmed write was SENT (:meth:`LeaseStore.deadline`), which ends before the
server can expire it. A task of its own sleeps until the earliest fencing time, :meth:`LeaseStore.fence_at`: the
deadline minus a stop allowance of ``min(1 s, renew_every_s / 2, (ttl - 2 * renew_every_s) / 2)``
(:attr:`LeaseStore.stop_allowance_s`). There it drops EVERY lease past that time and starts all their shards'
stops at once (concurrently, in the background), even when the renewal never answered (state ``fenced``). A stop
lasting up to ``renew_every_s`` plus the allowance therefore ends before the server can expire the key and let
another worker start the shard (with the defaults, TTL 10 s and renewals every 3.3 s: 4.3 s); a slower stop
overlaps the next holder by the excess. A renewal confirmed after its lease was fenced gives the key back, once
the shard's stop ended. Otherwise the worker never runs a shard whose lease it lost, except a shard it handed
over, for at most ``handover_timeout_s`` while the new holder starts (make-before-break: an overlap of two
workers is harmless, JetStream drops the second copy of each message by its id).

**One worker id, two processes.** Every value a worker writes carries a random nonce of its process
(:attr:`Worker.nonce`). A heartbeat ``worker.<our id>`` written after ours with another nonce (seen in a snapshot,
or by the KV watcher) means a second process runs under our id, e.g. a copied configuration: it is logged at
ERROR (at most once per 30 s), counted (``id_conflicts``, once per heartbeat revision seen) and shown
(``id_conflict``) until no such heartbeat was seen for a TTL. Meanwhile keys naming our id with another nonce are
left to that process (not taken over), so the two processes split the free slots instead of stealing each
other's leases; each keeps renewing the leases whose revision it holds.

**Failures.** Every NATS failure is counted (:class:`WorkerStatus`) and logged at most once per 30 s per kind;
the worker never crashes on one, it fences and retries. Every sleep uses the injected clock.

Events of a shard carry the shard id as ``feed`` (the manager entry name).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import logging
import os
import re
import secrets
import socket
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from cryptolink.clock import Clock, SystemClock
from cryptolink.cluster.leases import (
    SHARD_PREFIX,
    WORKER_PREFIX,
    ClusterError,
    Holder,
    Lease,
    LeaseLost,
    LeaseStore,
    LeaseStoreError,
    LeaseValue,
    decode_value,
    next_entry,
    open_bucket,
    shard_key,
    stop_watcher,
    worker_key,
    workers_of,
)
from cryptolink.cluster.shards import Shard, config_fingerprint, plan_shards
from cryptolink.config import CryptolinkConfig, ExchangeConfig
from cryptolink.errors import ConfigError
from cryptolink.manager import ExchangeManager

__all__ = [
    "HeldShard",
    "PeerStatus",
    "RoundPlan",
    "Slot",
    "Worker",
    "WorkerState",
    "WorkerStatus",
    "default_worker_id",
    "fair_targets",
    "idle_config",
    "plan_round",
    "slots_of",
]

log = logging.getLogger(__name__)

WorkerState = Literal["starting", "active", "fenced", "stopping"]

_LOG_EVERY_S = 30.0
"""A failure kind is logged at most once per this many seconds (each one is counted)."""
_ROUNDS_PER_INTERVAL = 10
"""Early (woken) rounds are spaced at least ``renew_every_s / _ROUNDS_PER_INTERVAL`` apart."""
_MAX_TIMEOUT_S = 5.0
_MIN_TIMEOUT_S = 0.5
_ID_BAD = re.compile(r"[^A-Za-z0-9_-]")


def default_worker_id() -> str:
    """``<hostname>-<pid>``, with every character outside ``[A-Za-z0-9_-]`` replaced by ``_`` (a KV key token),
    at most 64 characters."""
    return _ID_BAD.sub("_", f"{socket.gethostname()}-{os.getpid()}")[-64:]


def idle_config(config: CryptolinkConfig) -> CryptolinkConfig:
    """``config`` with every exchange entry disabled: what a worker's manager is built from (it then starts no
    entry by itself; the worker adds its shards). Built without validation (the loader refuses a configuration
    that streams nothing)."""
    exchanges = {name: e.model_copy(update={"enabled": False}) for name, e in config.exchanges.items()}
    return config.model_copy(update={"exchanges": exchanges})


# ----------------------------------------------------------------------------------------------- planning


@dataclass(frozen=True, slots=True)
class Slot:
    """One replica of one shard: the unit a lease covers.

    Attributes:
        key: the lease key ``shard.<shard id>.<replica>``.
        shard: the shard.
        replica: 0..redundancy-1.
    """

    key: str
    shard: Shard
    replica: int


def slots_of(shards: Sequence[Shard], redundancy: int) -> list[Slot]:
    """Every slot, shard by shard, replicas in order."""
    return [Slot(shard_key(s.id, r), s, r) for s in shards for r in range(redundancy)]


def fair_targets(total: int, cap: int, counts: Mapping[str, int]) -> dict[str, int]:
    """Each live worker's fair share of ``total`` slots.

    Workers ranked by (slots held, descending; id) get ``ceil(total/n)`` for the first ``total mod n`` of them
    and ``floor(total/n)`` for the rest (the ones already holding more keep the larger shares, so the fewest
    leases move), each capped at ``cap`` (the number of shards: a worker holds one slot per shard at most).

    Args:
        total: the number of slots.
        cap: the most slots one worker may hold.
        counts: live worker id -> slots it holds now (every live worker, this one included).

    Returns:
        worker id -> target (empty when ``counts`` is).
    """
    if not counts:
        return {}
    ranked = sorted(counts, key=lambda w: (-counts[w], w))
    base, rem = divmod(total, len(ranked))
    return {w: min(cap, base + (1 if i < rem else 0)) for i, w in enumerate(ranked)}


@dataclass(frozen=True, slots=True)
class RoundPlan:
    """What one worker does after a snapshot.

    Attributes:
        target: this worker's fair share.
        acquire: slots to claim, in order.
        release: keys of held slots to hand over.
    """

    target: int
    acquire: tuple[Slot, ...]
    release: tuple[str, ...]


def _spread(worker: str, key: str) -> bytes:
    return hashlib.sha256(f"{worker}\x00{key}".encode()).digest()[:8]


def plan_round(
    me: str,
    slots: Sequence[Slot],
    holders: Mapping[str, str],
    live: Collection[str],
    held: Collection[str],
    busy_shards: Collection[str],
    orphans: Collection[str] = (),
) -> RoundPlan:
    """The moves of worker ``me`` for one round (steps 6-8 of the module docstring); pure.

    Args:
        slots: every slot (:func:`slots_of`).
        holders: slot key -> worker id named by the key's value, for every key present (deleted and expired
            ones absent).
        live: live worker ids (``me`` is added).
        held: keys of the slots ``me`` holds.
        busy_shards: shard ids ``me`` must not claim now (running, handed over, cooling down after a failed
            start).
        orphans: keys free for at least one renewal interval; claimed even above target.
    """
    live_set = set(live) | {me}
    held_set = set(held)
    shard_count = len({s.shard.id for s in slots})
    replicas: dict[str, int] = {}
    counts = dict.fromkeys(live_set, 0)
    for slot in slots:
        worker = holders.get(slot.key)
        if worker is not None:
            replicas[slot.shard.id] = replicas.get(slot.shard.id, 0) + 1
            if worker in counts and worker != me:
                counts[worker] += 1
    counts[me] = len(held_set)
    targets = fair_targets(len(slots), shard_count, counts)
    target = targets[me]

    def free_for_me(key: str) -> bool:
        return key not in held_set and holders.get(key, me) == me

    mine_shards = {s.shard.id for s in slots if s.key in held_set} | set(busy_shards)
    candidates = sorted(
        (s for s in slots if free_for_me(s.key) and s.shard.id not in mine_shards),
        key=lambda s: (s.key not in holders, replicas.get(s.shard.id, 0), _spread(me, s.key)),
    )
    chosen: list[Slot] = []
    chosen_shards: set[str] = set()
    want = target - len(held_set)
    for slot in candidates:
        if want <= 0:
            break
        if slot.shard.id not in chosen_shards:
            chosen.append(slot)
            chosen_shards.add(slot.shard.id)
            want -= 1
    room = shard_count - len(held_set) - len(chosen)
    orphan_set = set(orphans)
    for slot in candidates:
        if room <= 0:
            break
        if slot.key in orphan_set and slot.shard.id not in chosen_shards:
            chosen.append(slot)
            chosen_shards.add(slot.shard.id)
            room -= 1

    release: list[str] = []
    excess = len(held_set) - target
    if excess > 0:
        deficit = sum(max(0, targets[w] - counts[w]) for w in targets if w != me)
        free = sum(1 for s in slots if s.key not in holders)
        n = min(excess, deficit - free)
        if n > 0:
            mine = sorted(
                (s for s in slots if s.key in held_set),
                key=lambda s: (-replicas.get(s.shard.id, 0), _spread(me, s.key)),
            )
            release = [s.key for s in mine[:n]]
    return RoundPlan(target, tuple(chosen), tuple(release))


# ------------------------------------------------------------------------------------------------- status


@dataclass(frozen=True, slots=True)
class HeldShard:
    """A slot this worker holds.

    Attributes:
        shard: shard id; replica: replica number; revision: the lease's revision (fencing token).
        held_since_ms: wall-clock epoch ms when this worker acquired it.
        running: the shard's manager entry is started.
    """

    shard: str
    replica: int
    revision: int
    held_since_ms: int
    running: bool


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """Another worker as its heartbeat shows it.

    Attributes:
        worker: its id; state: its state; held: leases it holds.
        same_config: its configuration fingerprint equals ours.
        age_s: seconds since its heartbeat was written (by its clock against ours).
    """

    worker: str
    state: str
    held: int
    same_config: bool
    age_s: float


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """One worker's state, JSON-friendly (:meth:`to_dict`), for the status API's cluster view.

    Attributes:
        worker_id, state, fingerprint, bucket: who, how (``starting|active|fenced|stopping``), which
            configuration, which lease bucket.
        workers_seen: live worker ids of the last snapshot (this one included).
        target: this worker's fair share of slots; slots: slots in the cluster (shards x redundancy).
        held: the slots held; handing_over: shard ids released but still running (make-before-break).
        peers: the other workers' heartbeats.
        leases_acquired / leases_renewed / leases_lost / leases_released: lease operation counts (lost: refused
            renewals and self-fences).
        self_fences: leases dropped because their fencing deadline passed without a confirmed renewal.
        renew_failures: renewals that failed on NATS (the lease kept until its deadline).
        nats_failures: every failed NATS operation (heartbeats, snapshots, acquisitions, renewals...).
        acquire_conflicts: acquisitions another worker won.
        start_failures: shards the manager refused to start (the lease is given back).
        last_renew_age_s: seconds since the last successful heartbeat or renewal (``None``: none yet).
        handovers: slots released for another worker; handovers_completed: those the new holder took and started
            before we stopped the shard; handover_timeouts: those stopped at ``handover_timeout_s``.
        config_mismatch: ids of workers seen with another configuration fingerprint.
        errors: unexpected exceptions in a round (logged with their traceback).
        stopping: shard ids whose stop is in progress (their leases already dropped).
        stop_failures: shard stops the manager failed (logged).
        id_conflict: another process writes this worker id's heartbeat now (seen within one TTL).
        id_conflicts: heartbeat writes of another process under this worker id seen (once per revision).
        unheld_slots: slots no worker has held for two renewal intervals although a live worker could (a shard
            failing to start everywhere); replicas beyond the number of live workers are not counted.
    """

    worker_id: str
    state: WorkerState
    fingerprint: str
    bucket: str
    workers_seen: tuple[str, ...]
    target: int
    slots: int
    held: tuple[HeldShard, ...]
    handing_over: tuple[str, ...]
    peers: tuple[PeerStatus, ...]
    leases_acquired: int
    leases_renewed: int
    leases_lost: int
    leases_released: int
    self_fences: int
    renew_failures: int
    nats_failures: int
    acquire_conflicts: int
    start_failures: int
    last_renew_age_s: float | None
    handovers: int
    handovers_completed: int
    handover_timeouts: int
    config_mismatch: tuple[str, ...]
    errors: int
    stopping: tuple[str, ...] = ()
    stop_failures: int = 0
    id_conflict: bool = False
    id_conflicts: int = 0
    unheld_slots: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts, lists and scalars."""
        return dataclasses.asdict(self)

    @property
    def shard_ids(self) -> frozenset[str]:
        """Ids of the shards held."""
        return frozenset(h.shard for h in self.held)


# -------------------------------------------------------------------------------------------- internals


@dataclass(slots=True)
class _Held:
    slot: Slot
    lease: Lease
    held_since_ms: int
    started_ms: int | None = None
    failed: bool = False


@dataclass(slots=True)
class _Handover:
    slot: Slot
    since: float


class _LogLimiter:
    """At most one log line per kind per :data:`_LOG_EVERY_S`; the lines skipped are counted into the next."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def warn(self, kind: str, msg: str, *args: object) -> None:
        self._emit(logging.WARNING, kind, msg, args)

    def error(self, kind: str, msg: str, *args: object) -> None:
        self._emit(logging.ERROR, kind, msg, args)

    def _emit(self, level: int, kind: str, msg: str, args: tuple[object, ...]) -> None:
        now = self._clock.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < _LOG_EVERY_S:
            self._skipped[kind] = self._skipped.get(kind, 0) + 1
            return
        self._last[kind] = now
        skipped = self._skipped.pop(kind, 0)
        suffix = f" ({skipped} more since the last report)" if skipped else ""
        log.log(level, msg + suffix, *args)


class _ShardHost(Protocol):
    """What the shard runner needs of a manager (:class:`~cryptolink.manager.ExchangeManager`)."""

    async def add_exchange(self, name: str, entry: ExchangeConfig) -> None: ...

    async def remove_exchange(self, name: str) -> None: ...


class _ShardRunner:
    """Starts and stops shards on the manager in background tasks (a slow start or stop never delays a round or
    the fencing task), one operation at a time per shard and in the order asked: each operation of a shard first
    waits for the previous one to end, so a shard being stopped is started again only once its stop ended.

    Args:
        manager: where the shards run.
        logs: rate-limited logging of failed stops.
        on_stopped: called with the shard id after each stop ended (failed or not).

    Attributes:
        running: shards started and not asked to stop.
        stop_errors: stops the manager failed (logged, rate-limited).
    """

    def __init__(self, manager: _ShardHost, logs: _LogLimiter, on_stopped: Callable[[str], None]) -> None:
        self._manager = manager
        self._logs = logs
        self._on_stopped = on_stopped
        self._ops: dict[str, list[asyncio.Task[None]]] = {}
        """Each shard's unfinished operations, in order (a new one waits for ALL of them: a cancelled start
        still queued behind a slow stop must not let the next stop overtake that stop)."""
        self._starts: dict[str, asyncio.Task[None]] = {}
        """Starts not yet followed by a stop."""
        self._stops: dict[asyncio.Task[None], str] = {}
        """Stops in progress -> shard id."""
        self.running: set[str] = set()
        self.stop_errors = 0

    @property
    def stopping(self) -> frozenset[str]:
        """Shards whose stop is in progress."""
        return frozenset(self._stops.values())

    def start(
        self, shard: Shard, on_started: Callable[[], None], on_failed: Callable[[BaseException], None]
    ) -> None:
        """Start ``shard`` in the background, after its previous operation ended; ``on_started`` or
        ``on_failed`` (the manager's exception) is called once it ran."""
        task = asyncio.get_running_loop().create_task(
            self._start(shard, self._unfinished(shard.id), on_started, on_failed),
            name=f"cluster-start-{shard.id}",
        )
        self._track(shard.id, task)
        self._starts[shard.id] = task

    def _unfinished(self, shard_id: str) -> set[asyncio.Task[None]]:
        return {t for t in self._ops.get(shard_id, ()) if not t.done()}

    def _track(self, shard_id: str, task: asyncio.Task[None]) -> None:
        self._ops.setdefault(shard_id, []).append(task)
        task.add_done_callback(functools.partial(self._forget, shard_id))

    def _forget(self, shard_id: str, task: asyncio.Task[None]) -> None:
        ops = self._ops.get(shard_id)
        if ops is not None and task in ops:
            ops.remove(task)
            if not ops:
                del self._ops[shard_id]

    async def _start(
        self,
        shard: Shard,
        previous: set[asyncio.Task[None]],
        on_started: Callable[[], None],
        on_failed: Callable[[BaseException], None],
    ) -> None:
        if previous:
            await asyncio.wait(previous)
        try:
            await self._manager.add_exchange(shard.id, shard.config)
        except Exception as exc:
            on_failed(exc)
            return
        self.running.add(shard.id)
        on_started()

    def stop(self, shard_id: str) -> None:
        """Stop ``shard_id`` in the background; returns at once. A start not finished yet is cancelled (the
        manager undoes a cancelled ``add_exchange``); a shard neither running nor starting is left alone."""
        start = self._starts.pop(shard_id, None)
        pending = start is not None and not start.done()
        if start is not None and pending:
            start.cancel()
        if not pending and shard_id not in self.running:
            return
        self.running.discard(shard_id)
        task = asyncio.get_running_loop().create_task(
            self._stop(shard_id, self._unfinished(shard_id)), name=f"cluster-stop-{shard_id}"
        )
        self._track(shard_id, task)
        self._stops[task] = shard_id
        task.add_done_callback(self._stopped)

    async def _stop(self, shard_id: str, previous: set[asyncio.Task[None]]) -> None:
        if previous:
            await asyncio.wait(previous)
        try:
            await self._manager.remove_exchange(shard_id)
        except KeyError:
            pass  # not running: a start cancelled before it added the entry
        except Exception as exc:
            self.stop_errors += 1
            self._logs.warn("stop", "cluster: stopping shard %s failed: %r", shard_id, exc)

    def _stopped(self, task: asyncio.Task[None]) -> None:
        shard_id = self._stops.pop(task)
        self._on_stopped(shard_id)

    async def wait_stopped(self, shard_id: str) -> None:
        """Return once no stop of ``shard_id`` is in progress."""
        tasks = {t for t, s in self._stops.items() if s == shard_id}
        if tasks:
            await asyncio.wait(tasks)

    async def aclose(self) -> None:
        """Stop every shard running or starting, concurrently, and wait for every operation to end."""
        for shard_id in sorted(set(self._starts) | self.running):
            self.stop(shard_id)
        tasks = set(self._stops) | {t for ops in self._ops.values() for t in ops}
        if tasks:
            await asyncio.wait(tasks)


# ------------------------------------------------------------------------------------------------ worker


class Worker:
    """One scale-out worker (see the module docstring).

    Args:
        config: the validated configuration; ``config.nats`` (with ``cluster``) is required.
        manager: the manager the shards run on, built from :func:`idle_config` (runs nothing by itself).
        nc: a connected NATS client (the caller owns it: connection options, reconnection, closing).
        clock: time source for rounds, fencing deadlines and status ages.

    Attributes:
        worker_id: ``nats.cluster.worker_id`` or :func:`default_worker_id`.
        nonce: 16 random hex characters, written into every value of this worker (tells apart two processes
            given one worker id).

    Raises:
        ConfigError: ``config.nats`` is missing, or two shards would share one id.
    """

    def __init__(
        self,
        config: CryptolinkConfig,
        manager: ExchangeManager,
        *,
        nc: NatsClient,
        clock: Clock | None = None,
    ) -> None:
        if config.nats is None:
            raise ConfigError([("nats", "a cluster worker needs the nats section (nats.cluster)")])
        self.config = config
        self.cluster = config.nats.cluster
        self.worker_id = self.cluster.worker_id or default_worker_id()
        self.nonce = secrets.token_hex(8)
        self.shards = plan_shards(config, self.cluster.shard_symbols)
        self.fingerprint = config_fingerprint(config, self.shards)
        self.slots = slots_of(self.shards, self.cluster.redundancy)
        self._slots = {s.key: s for s in self.slots}
        self._manager = manager
        self._nc = nc
        self._clock: Clock = clock or SystemClock()
        self._renew_every = self.cluster.renew_every_s
        self._timeout_s = max(_MIN_TIMEOUT_S, min(self._renew_every, _MAX_TIMEOUT_S))
        self._logs = _LogLimiter(self._clock)
        self._runner = _ShardRunner(manager, self._logs, self._on_stopped)
        self._background: set[asyncio.Task[None]] = set()
        self._store: LeaseStore | None = None
        self._js: JetStreamContext | None = None
        self._held: dict[str, _Held] = {}
        self._handovers: dict[str, _Handover] = {}
        self._cooldown: dict[str, float] = {}
        self._free_since: dict[str, float] = {}
        self._live: tuple[str, ...] = (self.worker_id,)
        self._peers: tuple[PeerStatus, ...] = ()
        self._mismatch: set[str] = set()
        self._target = 0
        self._wake = asyncio.Event()
        self._fence_wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._started = False
        self._closing = False
        self._closed = False
        self._ok_once = False
        self._fenced = False
        self._started_ms = 0
        self._last_write_ok: float | None = None
        self._beat_revision = 0
        self._conflict_until: float | None = None
        self._conflict_revision = 0
        self._run_task: asyncio.Task[Any] | None = None
        self._fence_task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        # counters
        self.leases_acquired = 0
        self.leases_renewed = 0
        self.leases_lost = 0
        self.leases_released = 0
        self.self_fences = 0
        self.renew_failures = 0
        self.nats_failures = 0
        self.acquire_conflicts = 0
        self.start_failures = 0
        self.handovers = 0
        self.handovers_completed = 0
        self.handover_timeouts = 0
        self.watch_errors = 0
        self.errors = 0
        self.id_conflicts = 0

    # ------------------------------------------------------------------------------------------ lifecycle

    @property
    def state(self) -> WorkerState:
        """``stopping`` once :meth:`aclose` began; ``fenced`` after a self-fence until a round succeeds;
        ``starting`` until the first successful round; else ``active``."""
        if self._closing:
            return "stopping"
        if self._fenced:
            return "fenced"
        return "active" if self._ok_once else "starting"

    async def start(self) -> None:
        """Check and start the manager, open (or create) the lease bucket, start the fencing task.

        NATS being unreachable is not an error here: the rounds keep trying to open the bucket.

        Raises:
            ClusterError: the manager has enabled entries of its own, or the bucket cannot serve leases.
        """
        if self._started:
            return
        enabled = sorted(self._manager.config.enabled_exchanges())
        if enabled:
            raise ClusterError(
                f"a worker's manager must run nothing by itself (build it from idle_config(config)); "
                f"it has enabled entries {enabled}"
            )
        await self._manager.start()
        self._started = True
        self._started_ms = self._now_ms()
        self._js = self._nc.jetstream(timeout=self._timeout_s)
        await self._open()
        self._fence_task = asyncio.get_running_loop().create_task(self._fence_loop(), name="cluster-fence")

    async def run(self) -> None:
        """Run rounds until cancelled or closed (:meth:`start` first when not done). Never raises on NATS
        failures."""
        await self.start()
        self._run_task = asyncio.current_task()
        try:
            while not self._closing:
                self._wake.clear()
                try:
                    await self._round()
                except Exception:
                    self.errors += 1
                    log.exception("cluster: worker %s round failed", self.worker_id)
                self._notify()
                await self._pause()
        finally:
            self._run_task = None

    async def aclose(self) -> None:
        """Stop: end the rounds, delete the heartbeat, release every lease, keep each running shard until
        another worker has taken and started its slot, ``handover_timeout_s`` passed or no other live worker is
        left, then stop every shard (concurrently), wait for every stop, and end the worker's tasks. The manager
        itself is left to its owner. Idempotent; never raises on NATS failures."""
        if self._closed:
            return
        self._closed = True
        self._closing = True
        self._notify()
        run = self._run_task
        if run is not None and run is not asyncio.current_task() and not run.done():
            run.cancel()
            await asyncio.wait({run})
        store = self._store
        if store is not None:
            try:
                await store.forget_worker()
            except LeaseStoreError as exc:
                self._failure("heartbeat delete", exc)
            now = self._clock.monotonic()
            for key, h in list(self._held.items()):
                del self._held[key]
                try:
                    released = await store.release(h.lease)
                except LeaseStoreError as exc:
                    self._failure("release", exc)
                    released = False
                if released:
                    self.leases_released += 1
                if released and h.slot.shard.id in self._runner.running:
                    self._handovers[key] = _Handover(h.slot, now)
                    self.handovers += 1
                else:
                    self._runner.stop(h.slot.shard.id)
            await self._drain_handovers(store)
        for key, h in list(self._held.items()):
            del self._held[key]
            self._runner.stop(h.slot.shard.id)
        for key, ho in list(self._handovers.items()):
            del self._handovers[key]
            self._runner.stop(ho.slot.shard.id)
        await self._runner.aclose()
        if self._background:  # keys given back once their shard stopped
            await asyncio.wait(set(self._background))
        for task in (self._fence_task, self._watch_task):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.wait({task})
        self._notify()

    async def _drain_handovers(self, store: LeaseStore) -> None:
        deadline = self._clock.monotonic() + self.cluster.handover_timeout_s
        while self._handovers:
            now = self._clock.monotonic()
            if now >= deadline:
                return
            self._wake.clear()
            try:
                snap = await store.holders()
            except LeaseStoreError as exc:
                self._failure("snapshot", exc)
                return
            self._observe(snap)
            await self._finish_handovers(snap)
            if len(self._live) <= 1:  # no live worker left to take them
                return
            if self._handovers:
                await self._sleep_or_wake(self._wake, min(self._renew_every, deadline - now))

    # -------------------------------------------------------------------------------------------- status

    def status(self) -> WorkerStatus:
        """The worker's state now (see :class:`WorkerStatus`)."""
        now = self._clock.monotonic()
        held = tuple(
            HeldShard(
                h.slot.shard.id,
                h.slot.replica,
                h.lease.revision,
                h.held_since_ms,
                h.slot.shard.id in self._runner.running,
            )
            for h in sorted(self._held.values(), key=lambda h: h.slot.key)
        )
        return WorkerStatus(
            worker_id=self.worker_id,
            state=self.state,
            fingerprint=self.fingerprint,
            bucket=self.cluster.bucket,
            workers_seen=self._live,
            target=self._target,
            slots=len(self.slots),
            held=held,
            handing_over=tuple(sorted(ho.slot.shard.id for ho in self._handovers.values())),
            peers=self._peers,
            leases_acquired=self.leases_acquired,
            leases_renewed=self.leases_renewed,
            leases_lost=self.leases_lost,
            leases_released=self.leases_released,
            self_fences=self.self_fences,
            renew_failures=self.renew_failures,
            nats_failures=self.nats_failures,
            acquire_conflicts=self.acquire_conflicts,
            start_failures=self.start_failures,
            last_renew_age_s=None if self._last_write_ok is None else now - self._last_write_ok,
            handovers=self.handovers,
            handovers_completed=self.handovers_completed,
            handover_timeouts=self.handover_timeouts,
            config_mismatch=tuple(sorted(self._mismatch)),
            errors=self.errors,
            stopping=tuple(sorted(self._runner.stopping)),
            stop_failures=self._runner.stop_errors,
            id_conflict=self.id_conflict,
            id_conflicts=self.id_conflicts,
            unheld_slots=self._unheld(now),
        )

    def _unheld(self, now: float) -> int:
        """Slots free (no holder in the last snapshot) for two renewal intervals that a live worker could hold:
        with fewer live workers than ``redundancy`` a shard can have only as many replicas as workers, and the
        replicas beyond are not counted."""
        red = self.cluster.redundancy
        workers = max(1, len(self._live))
        free: dict[str, int] = {}
        long_free: dict[str, int] = {}
        for key, since in self._free_since.items():
            shard_id = self._slots[key].shard.id
            free[shard_id] = free.get(shard_id, 0) + 1
            if now - since >= 2 * self._renew_every:
                long_free[shard_id] = long_free.get(shard_id, 0) + 1
        unheld = 0
        for shard_id, count in long_free.items():
            held = red - free[shard_id]
            unheld += min(count, max(0, min(red, workers) - held))
        return unheld

    @property
    def id_conflict(self) -> bool:
        """Another process wrote this worker id's heartbeat within the last TTL (see the module docstring)."""
        return self._conflict_until is not None and self._clock.monotonic() < self._conflict_until

    async def next_change(self) -> None:
        """Return after the worker's state next changes (a round ended, a lease was lost or fenced, a shard
        started or stopped)."""
        await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # ---------------------------------------------------------------------------------------------- helpers

    def _now_ms(self) -> int:
        return self._clock.time_ns() // 1_000_000

    def _failure(self, kind: str, exc: BaseException) -> None:
        self.nats_failures += 1
        self._logs.warn(kind, "cluster: worker %s: %s failed: %s", self.worker_id, kind, exc)

    async def _sleep_or_wake(self, wake: asyncio.Event, delay: float | None) -> None:
        """Sleep ``delay`` s on the clock (``None``: no limit), or until ``wake`` is set."""
        if wake.is_set():
            return
        waiter = asyncio.ensure_future(wake.wait())
        tasks: set[asyncio.Future[Any]] = {waiter}
        if delay is not None:
            tasks.add(asyncio.ensure_future(self._clock.sleep(max(0.0, delay))))
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()

    async def _pause(self) -> None:
        """Between rounds: at least a tenth of the interval, at most the interval (woken early by the watcher)."""
        gap = self._renew_every / _ROUNDS_PER_INTERVAL
        await self._clock.sleep(gap)
        await self._sleep_or_wake(self._wake, self._renew_every - gap)

    async def _open(self) -> bool:
        if self._store is not None:
            return True
        assert self._js is not None
        try:
            kv, ttl = await open_bucket(self._js, self.cluster)
        except LeaseStoreError as exc:
            self._failure("open bucket", exc)
            return False
        self._store = LeaseStore(
            kv,
            self.worker_id,
            fingerprint=self.fingerprint,
            ttl_s=ttl,
            renew_every_s=self._renew_every,
            clock=self._clock,
            timeout_s=self._timeout_s,
            nonce=self.nonce,
        )
        self._watch_task = asyncio.get_running_loop().create_task(
            self._watch_loop(self._store), name="cluster-watch"
        )
        return True

    # ------------------------------------------------------------------------------------------------ round

    async def _round(self) -> None:
        if not await self._open():
            return
        store = self._store
        assert store is not None
        await self._expire_handovers(store)
        await self._drop_failed(store)
        beat_ok = await self._beat(store)
        await asyncio.gather(*(self._renew(store, h) for h in list(self._held.values())))
        if not beat_ok:
            return
        try:
            snap = await store.holders()
        except LeaseStoreError as exc:
            self._failure("snapshot", exc)
            return
        self._observe(snap)
        await self._finish_handovers(snap)
        if self._closing:
            return
        now = self._clock.monotonic()
        for shard_id, until in list(self._cooldown.items()):
            if now >= until:
                del self._cooldown[shard_id]
        orphans = {k for k, t in self._free_since.items() if now - t >= self._renew_every}
        busy = (
            {h.slot.shard.id for h in self._held.values()}
            | {ho.slot.shard.id for ho in self._handovers.values()}
            | set(self._cooldown)
            | self._runner.running
            | self._runner.stopping
        )
        plan = plan_round(
            self.worker_id,
            self.slots,
            self._plan_holders(snap),
            self._live,
            self._held,
            busy,
            orphans,
        )
        self._target = plan.target
        for key in plan.release:
            await self._hand_over(store, key)
        for slot in plan.acquire:
            await self._take(store, slot, snap.get(slot.key))
        self._ok_once = True
        self._fenced = False

    def _plan_holders(self, snap: Mapping[str, Holder]) -> dict[str, str]:
        """Slot key -> holder for :func:`plan_round`. While another process uses our worker id, a key naming our
        id with another nonce is that process's: it is labelled ``<id>#<nonce>`` (a worker that is not live), so
        the plan counts it as held by someone else and never takes it over."""
        conflict = self.id_conflict
        out: dict[str, str] = {}
        for key, holder in snap.items():
            if key not in self._slots:
                continue
            worker = holder.worker
            nonce = holder.value.nonce if holder.value is not None else None
            if conflict and worker == self.worker_id and nonce != self.nonce:
                worker = f"{worker}#{nonce}"
            out[key] = worker
        return out

    async def _beat(self, store: LeaseStore) -> bool:
        try:
            self._beat_revision = await store.heartbeat(
                started_ms=self._started_ms, state=self.state, held=len(self._held)
            )
        except LeaseStoreError as exc:
            self._failure("heartbeat", exc)
            return False
        self._last_write_ok = self._clock.monotonic()
        return True

    async def _renew(self, store: LeaseStore, h: _Held) -> None:
        key = h.slot.key
        try:
            lease = await store.renew(h.lease, started_ms=h.started_ms)
        except LeaseLost as exc:
            if self._held.get(key) is h:
                del self._held[key]
                self.leases_lost += 1
                log.warning("cluster: worker %s: %s; stopping shard %s", self.worker_id, exc, h.slot.shard.id)
                self._runner.stop(h.slot.shard.id)
                self._notify()
            return
        except LeaseStoreError as exc:
            self.renew_failures += 1
            self._failure("renew", exc)
            return
        if self._held.get(key) is h:
            h.lease = lease
            self.leases_renewed += 1
            self._last_write_ok = self._clock.monotonic()
            return
        # the lease was fenced while the renewal was in flight: give the key back rather than sit on it, once
        # the shard's stop ended (another worker may start the shard as soon as the key is gone)
        self._release_when_stopped(store, lease, h.slot.shard.id)

    def _release_when_stopped(self, store: LeaseStore, lease: Lease, shard_id: str) -> None:
        """Delete ``lease``'s key (compare-and-swap) in a background task, after ``shard_id``'s stop ended."""
        task = asyncio.get_running_loop().create_task(
            self._release_later(store, lease, shard_id), name=f"cluster-release-{lease.key}"
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _release_later(self, store: LeaseStore, lease: Lease, shard_id: str) -> None:
        await self._runner.wait_stopped(shard_id)
        try:
            if await store.release(lease):
                self.leases_released += 1
        except LeaseStoreError as exc:
            self._failure("release", exc)

    def _observe(self, snap: Mapping[str, Holder]) -> None:
        now_ms = self._now_ms()
        beat = snap.get(worker_key(self.worker_id))
        if beat is not None and beat.revision > self._beat_revision:  # written after our last heartbeat
            self._check_identity(beat.value, beat.revision)
        live = {self.worker_id}
        peers: list[PeerStatus] = []
        for worker, value in sorted(workers_of(snap).items()):
            if worker == self.worker_id:
                continue
            same = value.fingerprint == self.fingerprint
            if not same and worker not in self._mismatch:
                self._mismatch.add(worker)
                log.warning(
                    "cluster: worker %s runs another configuration (fingerprint %s, ours %s): not counted",
                    worker,
                    value.fingerprint,
                    self.fingerprint,
                )
            if same and value.state != "stopping":
                live.add(worker)
            peers.append(
                PeerStatus(
                    worker, value.state or "?", value.held or 0, same, (now_ms - value.renewed_ms) / 1000
                )
            )
        self._live = tuple(sorted(live))
        self._peers = tuple(peers)
        now = self._clock.monotonic()
        for key in self._slots:
            if key in snap:
                self._free_since.pop(key, None)
            else:
                self._free_since.setdefault(key, now)

    async def _finish_handovers(self, snap: Mapping[str, Holder]) -> None:
        for key, ho in list(self._handovers.items()):
            holder = snap.get(key)
            if (
                holder is not None
                and holder.worker != self.worker_id
                and holder.value is not None
                and holder.value.started_ms is not None
                and self._handovers.get(key) is ho
            ):
                del self._handovers[key]
                self.handovers_completed += 1
                log.info(
                    "cluster: worker %s: %s runs shard %s now; stopping it here",
                    self.worker_id,
                    holder.worker,
                    ho.slot.shard.id,
                )
                self._runner.stop(ho.slot.shard.id)
                self._notify()

    async def _expire_handovers(self, store: LeaseStore) -> None:
        now = self._clock.monotonic()
        for key, ho in list(self._handovers.items()):
            if now - ho.since < self.cluster.handover_timeout_s or self._handovers.get(key) is not ho:
                continue
            del self._handovers[key]
            lease: Lease | None = None
            if not self._closing:
                try:
                    lease = await store.acquire(key)
                except LeaseStoreError as exc:
                    self._failure("acquire", exc)
            if lease is not None:  # nobody came: keep running it as its holder again
                self._held[key] = _Held(ho.slot, lease, self._now_ms(), started_ms=self._now_ms())
                self.leases_acquired += 1
                self._fence_wake.set()
                log.info("cluster: worker %s: nobody took shard %s; kept", self.worker_id, ho.slot.shard.id)
                continue
            self.handover_timeouts += 1
            log.warning(
                "cluster: worker %s: handover of shard %s timed out after %.1f s; stopping it",
                self.worker_id,
                ho.slot.shard.id,
                self.cluster.handover_timeout_s,
            )
            self._runner.stop(ho.slot.shard.id)
            self._notify()

    async def _drop_failed(self, store: LeaseStore) -> None:
        for key, h in list(self._held.items()):
            if not h.failed:
                continue
            del self._held[key]
            shard_id = h.slot.shard.id
            self._runner.stop(shard_id)
            if shard_id in self._runner.stopping:
                self._release_when_stopped(store, h.lease, shard_id)
                continue
            try:
                if await store.release(h.lease):
                    self.leases_released += 1
            except LeaseStoreError as exc:
                self._failure("release", exc)

    async def _hand_over(self, store: LeaseStore, key: str) -> None:
        h = self._held.get(key)
        if h is None:
            return
        try:
            released = await store.release(h.lease)
        except LeaseStoreError as exc:
            self._failure("release", exc)
            return
        if self._held.get(key) is not h:
            return
        del self._held[key]
        if released:
            self.leases_released += 1
        if released and h.slot.shard.id in self._runner.running:
            self._handovers[key] = _Handover(h.slot, self._clock.monotonic())
            self.handovers += 1
            log.info("cluster: worker %s: handing shard %s over", self.worker_id, h.slot.shard.id)
        else:
            self._runner.stop(h.slot.shard.id)
        self._notify()

    async def _take(self, store: LeaseStore, slot: Slot, holder: Holder | None) -> None:
        try:
            if holder is not None:  # the key names us but we do not hold it
                lease = await store.take_over(slot.key, holder.revision)
            else:
                lease = await store.acquire(slot.key)
        except LeaseStoreError as exc:
            self._failure("acquire", exc)
            return
        if lease is None:
            self.acquire_conflicts += 1
            return
        if self._closing:
            with contextlib.suppress(LeaseStoreError):
                await store.release(lease)
            return
        h = _Held(slot, lease, self._now_ms())
        self._held[slot.key] = h
        self.leases_acquired += 1
        self._fence_wake.set()
        log.info("cluster: worker %s: acquired %s (revision %d)", self.worker_id, slot.key, lease.revision)
        self._runner.start(
            slot.shard,
            on_started=lambda: self._on_started(h),
            on_failed=lambda exc: self._on_failed(h, exc),
        )
        self._notify()

    def _on_started(self, h: _Held) -> None:
        if self._held.get(h.slot.key) is h:
            h.started_ms = self._now_ms()
            self._wake.set()  # publish started_ms at once: a worker handing this shard over waits for it
        self._notify()

    def _on_stopped(self, shard_id: str) -> None:
        self._notify()

    def _check_identity(self, value: LeaseValue | None, revision: int) -> None:
        """``value`` was written to our heartbeat key at ``revision``, after our own heartbeat: another nonce
        means another process uses our worker id (see the module docstring)."""
        if value is None or value.worker != self.worker_id or value.nonce == self.nonce:
            return
        was = self.id_conflict
        self._conflict_until = self._clock.monotonic() + self._store_ttl()
        if revision > self._conflict_revision:
            self._conflict_revision = revision
            self.id_conflicts += 1
        self._logs.error(
            "worker id",
            "cluster: worker %s: another process uses this worker id (its heartbeat nonce %s, started at %d ms; "
            "ours %s, %d ms): give every process its own nats.cluster.worker_id. Until then the keys naming %s "
            "that this process does not hold are left alone",
            self.worker_id,
            value.nonce,
            value.acquired_ms,
            self.nonce,
            self._started_ms,
            self.worker_id,
        )
        if not was:
            self._notify()

    def _on_failed(self, h: _Held, exc: BaseException) -> None:
        self.start_failures += 1
        self._cooldown[h.slot.shard.id] = self._clock.monotonic() + self._store_ttl()
        self._logs.warn(
            "start", "cluster: worker %s: starting shard %s failed: %r", self.worker_id, h.slot.shard.id, exc
        )
        if self._held.get(h.slot.key) is h:
            h.failed = True
            self._wake.set()
        self._notify()

    def _store_ttl(self) -> float:
        return self._store.ttl_s if self._store is not None else self.cluster.lease_ttl_s

    # ------------------------------------------------------------------------------------------- fencing

    async def _fence_loop(self) -> None:
        """Drop the leases past their fencing time (:meth:`LeaseStore.fence_at`) and start all their shards' stops
        at once, whatever the rounds do (see the module docstring). Never waits for a stop."""
        while True:
            self._fence_wake.clear()
            store = self._store
            now = self._clock.monotonic()
            earliest: float | None = None
            fenced: list[_Held] = []
            if store is not None:
                for key, h in list(self._held.items()):
                    at = store.fence_at(h.lease)
                    if at > now:
                        earliest = at if earliest is None else min(earliest, at)
                        continue
                    del self._held[key]
                    self._runner.stop(h.slot.shard.id)
                    fenced.append(h)
            if fenced:
                self.leases_lost += len(fenced)
                self.self_fences += len(fenced)
                self._fenced = True
                log.warning(
                    "cluster: worker %s: leases %s not confirmed for %.1f s or more; stopping shards %s "
                    "(self-fence)",
                    self.worker_id,
                    ", ".join(h.slot.key for h in fenced),
                    min(now - h.lease.renewed_at for h in fenced),
                    ", ".join(h.slot.shard.id for h in fenced),
                )
                self._notify()
            delay = None if earliest is None else earliest - self._clock.monotonic()
            await self._sleep_or_wake(self._fence_wake, delay)

    # ------------------------------------------------------------------------------------------- watching

    def _interesting(self, entry: KeyValue.Entry) -> bool:
        """A change that may call for a round now: a slot freed, a slot we handed over taken or started, a
        worker joining or leaving."""
        key = entry.key
        deleted = entry.operation in (KV_DEL, KV_PURGE)
        if key in self._handovers:
            return True
        if key.startswith(SHARD_PREFIX):
            return deleted
        if key.startswith(WORKER_PREFIX):
            worker = key[len(WORKER_PREFIX) :]
            return worker != self.worker_id and (deleted or worker not in self._live)
        return False

    async def _watch_loop(self, store: LeaseStore) -> None:
        while True:
            watcher: KeyValue.KeyWatcher | None = None
            try:
                watcher = await store.watch()
                caught_up = False
                my_key = worker_key(self.worker_id)
                while True:
                    entry = await next_entry(watcher, None)
                    if entry is None:
                        caught_up = True
                    elif not caught_up:
                        continue
                    elif entry.key == my_key:  # a write since the watcher started: ours, or another process's
                        if entry.operation not in (KV_DEL, KV_PURGE) and entry.revision is not None:
                            self._check_identity(decode_value(entry.value), entry.revision)
                    elif self._interesting(entry):
                        self._wake.set()
            except LeaseStoreError as exc:
                self.watch_errors += 1
                self._failure("watch", exc)
            except Exception as exc:
                self.watch_errors += 1
                self._logs.warn("watch", "cluster: worker %s: KV watcher failed: %r", self.worker_id, exc)
            finally:
                if watcher is not None:
                    with contextlib.suppress(Exception):
                        await stop_watcher(watcher)
            await self._clock.sleep(self._renew_every)
