"""Leases on NATS KV: who runs which shard, claimed with create / compare-and-swap and kept alive by renewal.

**The bucket.** One KV bucket (``nats.cluster.bucket``) with ``history=1`` and a bucket TTL of ``lease_ttl_s``.
A KV bucket is a JetStream stream ``KV_<bucket>`` on subjects ``$KV.<bucket>.<key>``; a key's value is the last
message on its subject and its revision is that message's stream sequence
(https://docs.nats.io/learn/key-value/under-the-hood.md,
https://docs.nats.io/nats-concepts/jetstream/key-value-store). The bucket TTL is the stream's ``max_age``,
"maximum age of any entry in the bucket" (https://docs.nats.io/nats-concepts/jetstream/streams, ``MaxAge``): with
one message per key, every write restarts the key's clock, and a key not written for ``lease_ttl_s`` is removed by
the server. On nats-server 2.9 the removal leaves NO marker (markers for keys removed by age,
``subject_delete_marker_ttl``, exist from server 2.11 only:
https://docs.nats.io/learn/key-value/ttl-and-limits.md), so a watcher never hears of an expiry: :meth:`holders`
therefore reads a fresh snapshot each time instead of trusting a long-lived watcher. Per-key TTLs (``msg_ttl``)
need server 2.11 too and are not used.

**Keys.** ``shard.<shard id>.<replica>`` (replica 0..redundancy-1) and ``worker.<worker id>`` (a worker's
heartbeat, written with a plain put). Values are msgspec JSON :class:`LeaseValue`.

**Operations.**

- :meth:`LeaseStore.acquire`: ``kv.create``, a publish with ``Nats-Expected-Last-Subject-Sequence: 0``; it fails
  while the key holds a value. nats-py's ``create`` also re-creates a key whose last message is a delete or purge
  marker (it reads the marker and retries with ``last=<marker revision>``), checked in nats-py 2.16 and by the
  tests.
- :meth:`LeaseStore.renew`: ``kv.update(last=lease.revision)``: the server refuses it (error 10071, wrong last
  sequence) when anyone wrote the key since, or when it expired; that is :class:`LeaseLost`. One exception: the
  key holds OUR value of the same lease (same worker, ``acquired_ms`` and ``nonce``) at another revision, which happens
  when an earlier renewal reached the server but its reply did not reach us (a timeout); the renewal is retried
  once against that revision (still compare-and-swap, so nobody else's write can be overwritten).
- :meth:`LeaseStore.release`: ``kv.delete(last=lease.revision)``; a lease already lost is not an error.

**Fencing.** A :class:`Lease` carries its revision and ``renewed_at``: this process's monotonic clock (s) when the
write that produced the revision was SENT. The server stamps the message after it arrives, so the key cannot
expire before ``renewed_at + ttl_s``; a holder trusts its lease only until :meth:`LeaseStore.deadline`
(``renewed_at + ttl_s - renew_every_s``), which ends one renewal interval before the earliest server expiry,
whether or not a renewal's reply ever comes. Stopping a shard takes time (a feed closing its websockets), so the
holder starts stopping it earlier still, at :meth:`LeaseStore.fence_at` (the deadline minus
:attr:`LeaseStore.stop_allowance_s`): a stop that lasts up to ``renew_every_s + stop_allowance_s`` ends before the
server can expire the key and let another worker take it.

**Process identity.** Every value this store writes carries ``nonce``, random per :class:`LeaseStore` (the worker
passes one per process), so two processes given one worker id (a copied configuration) are told apart: a
heartbeat with our worker id and another nonce was written by another process; a renewal recovers only a value
carrying our nonce.

**Known server caveat.** nats-server 2.9.15-2.9.20 did not serialize concurrent expected-last-subject-sequence
publishes on a CLUSTERED stream (two could be accepted:
https://github.com/nats-io/nats-server/issues/4320). The damage is bounded: of two such acquirers, the one whose
revision is no longer the key's last fails its next renewal and stops (a lease lost), and JetStream's message-id
deduplication absorbs the overlap.

Errors: every NATS failure (timeout, no responders, connection closed or reconnecting, an API error) is raised
as :class:`LeaseStoreError` with the original as ``__cause__``; callers count them and retry.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from cryptolink.clock import Clock, SystemClock
from cryptolink.config import NatsClusterConfig
from cryptolink.errors import CryptolinkError

__all__ = [
    "SHARD_PREFIX",
    "STOP_ALLOWANCE_MAX_S",
    "WORKER_PREFIX",
    "ClusterError",
    "Holder",
    "Lease",
    "LeaseLost",
    "LeaseStore",
    "LeaseStoreError",
    "LeaseValue",
    "decode_value",
    "next_entry",
    "open_bucket",
    "shard_key",
    "slot_of",
    "stop_watcher",
    "worker_key",
    "workers_of",
]

log = logging.getLogger(__name__)

SHARD_PREFIX = "shard."
"""Prefix of lease keys: ``shard.<shard id>.<replica>``."""
WORKER_PREFIX = "worker."
"""Prefix of heartbeat keys: ``worker.<worker id>``."""
STOP_ALLOWANCE_MAX_S = 1.0
"""The most (s) by which fencing starts a shard's stop before the lease's trust deadline (see
:attr:`LeaseStore.stop_allowance_s`)."""

_WRONG_LAST_SEQUENCE = frozenset({10071, 10164})
"""JetStream API error codes of a refused expected-last-sequence check (``JSStreamWrongLastSequenceErrF`` and its
constant form), as nats-py's KV maps them to ``KeyWrongLastSequenceError``."""
_SNAPSHOT_CONSUMER_IDLE_S = 5.0
"""A snapshot's ephemeral consumer is deleted by the server this long after the snapshot unsubscribes
(``inactive_threshold``), instead of nats-py's 5 minutes."""
_NATS_ERRORS = (nats.errors.Error, asyncio.TimeoutError, OSError)


class ClusterError(CryptolinkError):
    """Scale-out cannot work as configured: the lease bucket is unusable (no TTL, a TTL too short for the
    renewal interval), or a worker was given a manager that already runs entries."""


class LeaseStoreError(ClusterError):
    """A lease operation did not complete: NATS timed out, was unreachable or refused the request. The lease
    may or may not have been written; the caller retries at its next round (fencing covers the doubt)."""


class LeaseLost(ClusterError):
    """A renewal was refused: the key was written by someone else, deleted, or expired since our revision.

    Attributes:
        key: the lease key.
        holder: the worker the key now names, or ``None`` (gone, or not a lease value).
    """

    def __init__(self, key: str, holder: str | None) -> None:
        self.key = key
        self.holder = holder
        super().__init__(f"lease {key} lost" + (f" to {holder}" if holder else " (key gone)"))


class LeaseValue(msgspec.Struct, frozen=True, omit_defaults=True):
    """The JSON value of a lease or heartbeat key.

    Attributes:
        worker: the holder's worker id.
        acquired_ms: wall-clock epoch ms when the lease was acquired (a heartbeat: when the worker started).
        renewed_ms: wall-clock epoch ms of this write.
        fingerprint: the holder's :func:`cryptolink.cluster.shards.config_fingerprint`.
        started_ms: a lease whose shard runs: when the holder's manager started it (epoch ms); ``None`` while
            starting. A worker handing the shard over waits for it (make-before-break).
        state: a heartbeat: the worker's state (``starting``, ``active``, ``fenced``, ``stopping``).
        held: a heartbeat: the leases the worker holds.
        nonce: the writing process's random token (:attr:`LeaseStore.nonce`); ``None`` in values written by
            versions without it.
    """

    worker: str
    acquired_ms: int
    renewed_ms: int
    fingerprint: str
    started_ms: int | None = None
    state: str | None = None
    held: int | None = None
    nonce: str | None = None


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(LeaseValue)


def shard_key(shard_id: str, replica: int) -> str:
    """``shard.<shard id>.<replica>``."""
    return f"{SHARD_PREFIX}{shard_id}.{replica}"


def worker_key(worker_id: str) -> str:
    """``worker.<worker id>``."""
    return f"{WORKER_PREFIX}{worker_id}"


def decode_value(data: bytes | None) -> LeaseValue | None:
    """A key's value, or ``None`` when it is not a :class:`LeaseValue` (empty, foreign or corrupt)."""
    if not data:
        return None
    try:
        return _DECODER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


@dataclass(frozen=True, slots=True)
class Lease:
    """A held lease.

    Attributes:
        key: the lease key.
        revision: the key's revision our last confirmed write produced (the fencing token).
        value: what we wrote.
        renewed_at: monotonic time (s, the store's clock) when that write was sent.
    """

    key: str
    revision: int
    value: LeaseValue
    renewed_at: float


class Holder(NamedTuple):
    """A key present in the bucket (deleted and expired keys are absent from :meth:`LeaseStore.holders`).

    Attributes:
        worker: the worker the value names (``""`` when the value is not a :class:`LeaseValue`).
        revision: the key's revision.
        value: the decoded value, or ``None``.
    """

    worker: str
    revision: int
    value: LeaseValue | None


async def open_bucket(js: JetStreamContext, cluster: NatsClusterConfig) -> tuple[KeyValue, float]:
    """The lease bucket, created when missing (``history=1``, TTL ``lease_ttl_s``, ``kv_replicas`` replicas).

    Returns:
        ``(kv, ttl_s)``: the bucket and its TTL as the server holds it. An existing bucket keeps its own TTL (a
        warning is logged when it differs from ``lease_ttl_s``): fencing deadlines use the server's value.

    Raises:
        ClusterError: the existing bucket has no TTL, or a TTL not above twice ``renew_every_s`` (a lease could
            expire between two renewals).
        LeaseStoreError: NATS failed.
    """
    try:
        try:
            kv = await js.key_value(cluster.bucket)
        except nats.js.errors.BucketNotFoundError:
            kv = await js.create_key_value(
                bucket=cluster.bucket, ttl=cluster.lease_ttl_s, history=1, replicas=cluster.kv_replicas
            )
        status = await kv.status()
    except _NATS_ERRORS as exc:
        raise LeaseStoreError(f"lease bucket {cluster.bucket}: {type(exc).__name__}: {exc}") from exc
    ttl = status.ttl
    if not ttl:
        raise ClusterError(
            f"lease bucket {cluster.bucket} has no TTL: leases would never expire; recreate it"
        )
    if not math.isclose(ttl, cluster.lease_ttl_s, rel_tol=1e-6):
        log.warning(
            "lease bucket %s has a TTL of %.3f s, not lease_ttl_s %.3f s; the bucket's TTL is used",
            cluster.bucket,
            ttl,
            cluster.lease_ttl_s,
        )
    if ttl <= 2 * cluster.renew_every_s:
        raise ClusterError(
            f"lease bucket {cluster.bucket}: TTL {ttl:g} s is not above twice the renewal interval "
            f"({cluster.renew_every_s:g} s)"
        )
    return kv, ttl


class LeaseStore:
    """Lease operations of one worker on one bucket (see the module docstring).

    Args:
        kv: the bucket (:func:`open_bucket`).
        worker_id: this worker's id (written into every value).
        fingerprint: this worker's configuration fingerprint (written into every value).
        ttl_s: the bucket's TTL, s.
        renew_every_s: the renewal interval, s (< ttl_s / 2).
        clock: time source (monotonic for fencing, wall clock for the values).
        timeout_s: bound on each operation, s (a snapshot gets twice as long).
        nonce: written into every value (:attr:`LeaseValue.nonce`); ``None``: 16 random hex characters.

    Attributes:
        stop_allowance_s: how much earlier than :meth:`deadline` a holder starts stopping a shard
            (:meth:`fence_at`): ``min(STOP_ALLOWANCE_MAX_S, renew_every_s / 2, (ttl_s - 2 * renew_every_s) / 2)``.
            The last term keeps :meth:`fence_at` at least half the slack ``ttl_s - 2 * renew_every_s`` after the
            next renewal is due, so a healthy holder never fences itself.

    Raises:
        ValueError: ``renew_every_s`` not in ``(0, ttl_s / 2)``.
    """

    def __init__(
        self,
        kv: KeyValue,
        worker_id: str,
        *,
        fingerprint: str,
        ttl_s: float,
        renew_every_s: float,
        clock: Clock | None = None,
        timeout_s: float = 2.0,
        nonce: str | None = None,
    ) -> None:
        if not 0 < renew_every_s < ttl_s / 2:
            raise ValueError(f"renew_every_s ({renew_every_s}) must be in (0, ttl_s / 2) with ttl_s {ttl_s}")
        self.kv = kv
        self.worker_id = worker_id
        self.fingerprint = fingerprint
        self.ttl_s = ttl_s
        self.renew_every_s = renew_every_s
        self.timeout_s = timeout_s
        self.nonce = nonce or secrets.token_hex(8)
        self.stop_allowance_s = min(STOP_ALLOWANCE_MAX_S, renew_every_s / 2, (ttl_s - 2 * renew_every_s) / 2)
        self._clock: Clock = clock or SystemClock()
        self.recovered = 0
        """Renewals whose first attempt found our own later revision (a lost reply) and succeeded on retry."""
        self.undecodable = 0
        """Keys seen in snapshots whose value was not a lease value."""

    # ------------------------------------------------------------------------------------------------ helpers

    def _now_ms(self) -> int:
        return self._clock.time_ns() // 1_000_000

    def deadline(self, lease: Lease) -> float:
        """Monotonic time (s) until which ``lease`` may be trusted: ``renewed_at + ttl_s - renew_every_s``."""
        return lease.renewed_at + self.ttl_s - self.renew_every_s

    def fence_at(self, lease: Lease) -> float:
        """Monotonic time (s) at which the holder starts stopping ``lease``'s shard unless a renewal was confirmed
        since: :meth:`deadline` minus :attr:`stop_allowance_s`."""
        return self.deadline(lease) - self.stop_allowance_s

    def _value(
        self, acquired_ms: int | None = None, *, state: str | None = None, held: int | None = None
    ) -> LeaseValue:
        now = self._now_ms()
        return LeaseValue(
            self.worker_id,
            acquired_ms if acquired_ms is not None else now,
            now,
            self.fingerprint,
            state=state,
            held=held,
            nonce=self.nonce,
        )

    def _fail(self, what: str, exc: BaseException) -> LeaseStoreError:
        return LeaseStoreError(f"{what}: {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------------------------------------ leases

    async def acquire(self, key: str) -> Lease | None:
        """Create ``key`` with our value.

        Returns:
            the lease, or ``None`` when the key is held (a value is present).

        Raises:
            LeaseStoreError: NATS failed (the key may have been created: a later snapshot shows it as ours).
        """
        value = self._value()
        sent = self._clock.monotonic()
        try:
            revision = await asyncio.wait_for(self.kv.create(key, _ENCODER.encode(value)), self.timeout_s)
        except nats.js.errors.KeyWrongLastSequenceError:
            return None
        except _NATS_ERRORS as exc:
            raise self._fail(f"acquire {key}", exc) from exc
        return Lease(key, revision, value, sent)

    async def take_over(self, key: str, revision: int) -> Lease | None:
        """Overwrite ``key`` at ``revision`` (compare-and-swap) with a fresh value of ours: used for a key that
        names this worker but that it does not hold (a create whose reply was lost, or this worker id's previous
        process).

        Returns:
            the lease, or ``None`` when the key moved on from ``revision``.

        Raises:
            LeaseStoreError: NATS failed.
        """
        value = self._value()
        sent = self._clock.monotonic()
        try:
            new = await asyncio.wait_for(
                self.kv.update(key, _ENCODER.encode(value), last=revision), self.timeout_s
            )
        except nats.js.errors.KeyWrongLastSequenceError:
            return None
        except _NATS_ERRORS as exc:
            raise self._fail(f"take over {key}", exc) from exc
        return Lease(key, new, value, sent)

    async def renew(self, lease: Lease, *, started_ms: int | None = None) -> Lease:
        """Rewrite ``lease``'s key at its revision (compare-and-swap), restarting its TTL.

        Args:
            started_ms: written as the value's ``started_ms`` (``None`` keeps the lease's).

        Returns:
            the renewed lease (new revision, ``renewed_at`` = when this write was sent).

        Raises:
            LeaseLost: the key moved on (another writer, a delete, an expiry); see the module docstring for the
                one retried case.
            LeaseStoreError: NATS failed; the lease stays valid until :meth:`deadline`.
        """
        started = started_ms if started_ms is not None else lease.value.started_ms
        value = msgspec.structs.replace(lease.value, renewed_ms=self._now_ms(), started_ms=started)
        data = _ENCODER.encode(value)
        sent = self._clock.monotonic()
        try:
            revision = await asyncio.wait_for(
                self.kv.update(lease.key, data, last=lease.revision), self.timeout_s
            )
            return Lease(lease.key, revision, value, sent)
        except nats.js.errors.KeyWrongLastSequenceError:
            pass
        except _NATS_ERRORS as exc:
            raise self._fail(f"renew {lease.key}", exc) from exc
        # refused: is the key still our lease at a later revision (an earlier renewal's reply was lost)?
        try:
            entry = await asyncio.wait_for(self.kv.get(lease.key), self.timeout_s)
        except nats.js.errors.KeyNotFoundError:
            raise LeaseLost(lease.key, None) from None
        except _NATS_ERRORS as exc:
            raise self._fail(f"renew {lease.key} (reading the key)", exc) from exc
        current = decode_value(entry.value)
        mine = (
            current is not None
            and current.worker == self.worker_id
            and current.acquired_ms == lease.value.acquired_ms
            and current.nonce == lease.value.nonce
            and entry.revision is not None
        )
        if not mine or entry.revision is None:
            raise LeaseLost(lease.key, current.worker if current is not None else None)
        sent = self._clock.monotonic()
        try:
            revision = await asyncio.wait_for(
                self.kv.update(lease.key, data, last=entry.revision), self.timeout_s
            )
        except nats.js.errors.KeyWrongLastSequenceError:
            raise LeaseLost(lease.key, None) from None
        except _NATS_ERRORS as exc:
            raise self._fail(f"renew {lease.key}", exc) from exc
        self.recovered += 1
        return Lease(lease.key, revision, value, sent)

    async def release(self, lease: Lease) -> bool:
        """Delete ``lease``'s key at its revision.

        Returns:
            ``True`` when deleted, ``False`` when the key had already moved on (the lease was lost: not an error).

        Raises:
            LeaseStoreError: NATS failed.
        """
        try:
            await asyncio.wait_for(self.kv.delete(lease.key, last=lease.revision), self.timeout_s)
        except nats.js.errors.APIError as exc:
            if exc.err_code in _WRONG_LAST_SEQUENCE:
                return False
            raise self._fail(f"release {lease.key}", exc) from exc
        except _NATS_ERRORS as exc:
            raise self._fail(f"release {lease.key}", exc) from exc
        return True

    # ------------------------------------------------------------------------------------------ heartbeats

    async def heartbeat(self, *, started_ms: int, state: str, held: int) -> int:
        """Write ``worker.<worker id>`` (plain put: only this worker writes it).

        Args:
            started_ms: when the worker started (epoch ms), stored as ``acquired_ms``.
            state: the worker's state; held: leases it holds.

        Returns:
            the key's new revision.

        Raises:
            LeaseStoreError: NATS failed.
        """
        value = self._value(started_ms, state=state, held=held)
        key = worker_key(self.worker_id)
        try:
            return await asyncio.wait_for(self.kv.put(key, _ENCODER.encode(value)), self.timeout_s)
        except _NATS_ERRORS as exc:
            raise self._fail(f"heartbeat {key}", exc) from exc

    async def forget_worker(self) -> None:
        """Delete this worker's heartbeat (a clean stop).

        Raises:
            LeaseStoreError: NATS failed.
        """
        key = worker_key(self.worker_id)
        try:
            await asyncio.wait_for(self.kv.delete(key), self.timeout_s)
        except _NATS_ERRORS as exc:
            raise self._fail(f"delete {key}", exc) from exc

    # ------------------------------------------------------------------------------------------- snapshots

    async def holders(self) -> dict[str, Holder]:
        """Every key present in the bucket now, with its holder and revision: one watcher snapshot (an ordered
        consumer delivering the last message per key, read up to the end marker, then stopped).

        Deleted and purged keys are left out (they are free); expired keys are gone from the stream.

        Raises:
            LeaseStoreError: NATS failed or the snapshot did not complete within ``2 * timeout_s``.
        """
        try:
            return await asyncio.wait_for(self._snapshot(), 2 * self.timeout_s)
        except _NATS_ERRORS as exc:
            raise self._fail("snapshot", exc) from exc

    async def _snapshot(self) -> dict[str, Holder]:
        watcher = await self.kv.watchall(inactive_threshold=_SNAPSHOT_CONSUMER_IDLE_S)
        out: dict[str, Holder] = {}
        try:
            while True:
                entry = await next_entry(watcher, self.timeout_s)
                if entry is None:
                    return out
                if entry.operation in (KV_DEL, KV_PURGE) or entry.revision is None:
                    out.pop(entry.key, None)
                    continue
                value = decode_value(entry.value)
                if value is None:
                    self.undecodable += 1
                out[entry.key] = Holder(value.worker if value is not None else "", entry.revision, value)
        finally:
            try:
                await stop_watcher(watcher)
            except Exception:  # the connection may be gone; the server drops the consumer after it idles
                log.debug("stopping a snapshot watcher failed", exc_info=True)

    async def watch(self) -> KeyValue.KeyWatcher:
        """A live watcher on the whole bucket (the current value of every key, ``None``, then each change), for
        prompt wake-ups; expiries are not delivered on server 2.9 (see the module docstring).

        Raises:
            LeaseStoreError: NATS failed.
        """
        try:
            return await asyncio.wait_for(self.kv.watchall(), 2 * self.timeout_s)
        except _NATS_ERRORS as exc:
            raise self._fail("watch", exc) from exc


async def next_entry(watcher: KeyValue.KeyWatcher, wait_s: float | None) -> KeyValue.Entry | None:
    """The watcher's next entry (``None``: the end-of-initial-values marker), waiting up to ``wait_s``
    (``None``: no limit); a typed front for nats-py's untyped ``updates``.

    Raises:
        nats.errors.TimeoutError: nothing came in time.
    """
    entry: KeyValue.Entry | None = await watcher.updates(timeout=wait_s)  # type: ignore[no-untyped-call]
    return entry


async def stop_watcher(watcher: KeyValue.KeyWatcher) -> None:
    """Unsubscribe ``watcher`` (typed front for nats-py's ``stop``)."""
    await watcher.stop()  # type: ignore[no-untyped-call]


def slot_of(key: str) -> tuple[str, int] | None:
    """``(shard id, replica)`` of a lease key, ``None`` for any other key."""
    if not key.startswith(SHARD_PREFIX):
        return None
    shard_id, _, replica = key[len(SHARD_PREFIX) :].rpartition(".")
    if not shard_id or not replica.isdigit():
        return None
    return shard_id, int(replica)


def workers_of(snapshot: Mapping[str, Holder]) -> dict[str, LeaseValue]:
    """Heartbeat values by worker id, from a snapshot (keys with undecodable values left out)."""
    out: dict[str, LeaseValue] = {}
    for key, holder in snapshot.items():
        if key.startswith(WORKER_PREFIX) and holder.value is not None:
            out[key[len(WORKER_PREFIX) :]] = holder.value
    return out
