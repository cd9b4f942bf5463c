"""The status of several instances through Redis.

Every instance with ``status.redis_url`` runs a :class:`RedisStatusPublisher`: after each status snapshot it
writes its monitoring document (:func:`cryptolink.status.documents.system_status`, msgspec JSON, with the
publisher's ``writer`` token as its first field) under ``<prefix>:status:<instance_id>`` with a lifetime of
``ttl_s``, and stamps ``<instance_id>`` in the sorted set ``<prefix>:instances`` with the snapshot's wall time in
epoch ms (one Lua script: atomic). An instance that stops writing loses its snapshot after ``ttl_s`` but stays in
the index, so readers list it as ``unknown`` until ``forget_after_s`` passes (then it is pruned from the index).
An instance stopped cleanly (:meth:`RedisStatusPublisher.aclose`) replaces its snapshot by a small tombstone
``{"state": "stopped", "stopped_at": ISO, "instance_id": ...}`` kept for ``forget_after_s``: readers list it as
``stopped``, neither healthy nor ``unknown``.

**Two processes, one instance id.** Each publisher draws a random ``writer`` token (uuid4). A write that finds
the key holding another writer's snapshot (not a tombstone), after this publisher has written at least once
itself, is a collision: counted (``collisions``), logged once at WARNING naming the instance id, marked for
readers in ``<prefix>:collision:<instance_id>`` (lifetime ``ttl_s``) and written anyway (each process keeps
showing up; the readers flag the instance, ``collision: true``, and never call it healthy). The first write of
a publisher does not count: the key may still hold the snapshot of the process it replaced (a crash and restart
within ``ttl_s``).

:class:`ClusterStatus` reads every instance of the index (``/api/cluster/status``, ``cryptolink status
--redis``). Concurrent reads share one Redis round trip, and its answer is reused for ``min(1 s, ttl_s / 4)``.
Neither class ever raises on a Redis failure: the publisher counts it and tries again at the next snapshot, the
reader answers a document with ``error``. Both use a bounded, blocking connection pool (:data:`MAX_CONNECTIONS`
connections, a free one awaited at most :data:`REDIS_TIMEOUT_S`).

A Redis URL may carry a password; :func:`redact_url` replaces it by ``***`` in every log line and document.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff

from cryptolink.redact import redact_url, scrub, url_secrets
from cryptolink.status import documents
from cryptolink.status.service import StatusService
from cryptolink.status.snapshot import StatusSnapshot

__all__ = [
    "DEFAULT_FORGET_AFTER_S",
    "MAX_CACHE_S",
    "MAX_CONNECTIONS",
    "MAX_INSTANCES",
    "REDIS_TIMEOUT_S",
    "ClusterStatus",
    "PublisherStats",
    "ReaderStats",
    "RedisStatusPublisher",
    "collision_key",
    "index_key",
    "status_key",
]

log = logging.getLogger("cryptolink.status")

DEFAULT_FORGET_AFTER_S = 86_400.0
"""An instance not seen for this long (s) is pruned from the index (it is no longer listed, not even as
``unknown``); a clean stop's tombstone lives as long."""

MAX_INSTANCES = 1000
"""At most this many instances (the most recently seen) are read per :meth:`ClusterStatus.read`."""

REDIS_TIMEOUT_S = 2.0
"""Connect and command timeout of every Redis call, and the longest wait for a free pooled connection, s (a
hung Redis never holds a write or a read longer)."""

MAX_CONNECTIONS = 8
"""Connections of each publisher's and reader's pool."""

MAX_CACHE_S = 1.0
"""A reader's answer is reused for ``min(MAX_CACHE_S, ttl_s / 4)`` seconds."""

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

# Both scripts read the writer token of the stored document from its first field: the publisher always
# encodes it first, and a tombstone or a document of an older version has none.
_WRITE_SCRIPT = """
local prev = redis.call('GET', KEYS[1])
local collision = 0
if prev and ARGV[8] == '0' then
  local other = string.match(prev, '^{"writer":"([^"]*)"')
  if other and other ~= ARGV[2] then
    collision = 1
    redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[3])
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[7])
return collision
"""
"""KEYS: status key, index, collision marker. ARGV: document, writer token, ttl ms, seen ms, instance id,
prune bound ms (exclusive), forget ms, ``1`` on the publisher's first write. Returns 1 on a collision."""

_TOMBSTONE_SCRIPT = """
local prev = redis.call('GET', KEYS[1])
if prev then
  local other = string.match(prev, '^{"writer":"([^"]*)"')
  if other and other ~= ARGV[2] then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
"""
"""KEYS: status key, index. ARGV: tombstone, writer token, lifetime ms, stop time ms, instance id. Returns 0
(nothing written) when the key holds another writer's snapshot: a live duplicate is not marked stopped."""


def status_key(prefix: str, instance_id: str) -> str:
    """The key of one instance's snapshot: ``<prefix>:status:<instance_id>``."""
    return f"{prefix}:status:{instance_id}"


def index_key(prefix: str) -> str:
    """The sorted set of instances (member: instance id, score: last seen, epoch ms): ``<prefix>:instances``."""
    return f"{prefix}:instances"


def collision_key(prefix: str, instance_id: str) -> str:
    """Set while two processes write the same instance id: ``<prefix>:collision:<instance_id>`` (value: the
    latest collision's time, epoch ms; lifetime ``ttl_s``)."""
    return f"{prefix}:collision:{instance_id}"


def _describe(exc: BaseException, secrets: list[str]) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return scrub(text, secrets)


def _client(url: str, retries: int) -> aioredis.Redis:
    """A client owning a bounded, blocking pool (closed with the client)."""
    backoff = NoBackoff() if retries == 0 else ExponentialBackoff(cap=0.5, base=0.05)
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=REDIS_TIMEOUT_S,
        socket_timeout=REDIS_TIMEOUT_S,
        socket_connect_timeout=REDIS_TIMEOUT_S,
        retry=Retry(backoff, retries),
    )
    return aioredis.Redis.from_pool(pool)


@dataclass(frozen=True, slots=True)
class PublisherStats:
    """Counters of a :class:`RedisStatusPublisher`.

    Attributes:
        writes: snapshots written.
        errors: writes that failed (Redis unreachable, timeout, refused...), the stop tombstone included.
        skipped: snapshots not written because the previous write was still in flight.
        last_error: the latest failure (``"<Type>: <message>"``, password removed), ``None`` if none yet.
        connected: whether the latest write succeeded (``False`` before the first one).
        last_write_ms: wall time of the latest snapshot written, epoch ms (``None`` before the first).
        collisions: writes that found the key holding another process's snapshot (same instance id).
        writer: this publisher's random token (the ``writer`` field of its documents).
    """

    writes: int
    errors: int
    skipped: int
    last_error: str | None
    connected: bool
    last_write_ms: int | None
    collisions: int = 0
    writer: str = ""


@dataclass(frozen=True, slots=True)
class ReaderStats:
    """Counters of a :class:`ClusterStatus`.

    Attributes:
        reads: reads answered from Redis.
        errors: reads that failed (answered with ``error``).
        shared: calls of :meth:`ClusterStatus.read` answered by another call's read (in flight or cached).
        last_error: the latest failure (password removed), ``None`` once a read works again.
    """

    reads: int
    errors: int
    shared: int
    last_error: str | None


class RedisStatusPublisher:
    """Writes every snapshot of ``service`` to Redis (see the module docstring).

    At most one write is in flight: a snapshot taken while the previous write has not finished is skipped and
    counted (``skipped``). A failed write is counted (``errors``), logged once per outage at WARNING (its
    recovery at INFO) and the next snapshot tries again. Nothing here raises on a Redis failure.

    Args:
        service: the status service whose snapshots are written (its ``instance_id`` names the key).
        redis_url: ``redis://[user:password@]host:port/db``, ``rediss://...`` or ``unix://...``.
        prefix: key prefix (``status.redis_prefix``).
        ttl_s: lifetime of the written snapshot, s (> 0); an instance silent for longer reads as ``unknown``.
        forget_after_s: index entries not refreshed for this long, s, are pruned at each write (default
            :data:`DEFAULT_FORGET_AFTER_S`, at least ``2 * ttl_s``); the index key itself and a clean stop's
            tombstone expire after it too.

    Raises:
        ValueError: ``ttl_s`` or ``forget_after_s`` is not positive.
    """

    def __init__(
        self,
        service: StatusService,
        redis_url: str,
        *,
        prefix: str,
        ttl_s: float,
        forget_after_s: float = DEFAULT_FORGET_AFTER_S,
    ) -> None:
        if ttl_s <= 0 or forget_after_s <= 0:
            raise ValueError("ttl_s and forget_after_s must be > 0")
        self.service = service
        self.redis = redact_url(redis_url)
        """The Redis URL without its password (safe to log and show)."""
        self._url = redis_url
        self._secrets = url_secrets(redis_url)
        self.prefix = prefix
        self.key = status_key(prefix, service.instance_id)
        self.writer = uuid.uuid4().hex
        """This process's token, stored as the ``writer`` field of every document it writes."""
        self._index = index_key(prefix)
        self._collision_key = collision_key(prefix, service.instance_id)
        self._ttl_ms = max(1, round(ttl_s * 1000))
        self._forget_ms = max(round(forget_after_s * 1000), 2 * self._ttl_ms)
        self._client: aioredis.Redis | None = None
        self._write_script: Any = None
        self._inflight: asyncio.Task[None] | None = None
        self._closed = False
        self._registered = False
        self._outage_errors = 0
        self._writes = 0
        self._errors = 0
        self._skipped = 0
        self._collisions = 0
        self._last_error: str | None = None
        self._connected = False
        self._last_write_ms: int | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    # ----------------------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Open the client and listen to the service's snapshots (idempotent; nothing is sent until the next
        snapshot, and an unreachable Redis does not fail the start).

        Raises:
            ValueError: ``redis_url`` is not a Redis URL redis-py can use.
        """
        if self._closed or self._client is not None:
            return
        self._client = _client(self._url, retries=0)  # the next snapshot is the retry
        self._write_script = self._client.register_script(_WRITE_SCRIPT)
        if not self._registered:
            self.service.add_snapshot_listener(self._on_snapshot)
            self._registered = True
        log.info(
            "status: publishing instance %r to Redis %s under %r (ttl %.1f s)",
            self.service.instance_id,
            self.redis,
            self.prefix,
            self._ttl_ms / 1000,
        )

    async def aclose(self) -> None:
        """Let the write in flight finish (it is cancelled after :data:`REDIS_TIMEOUT_S` + 1 s), stop writing,
        mark the instance ``stopped`` in Redis (when it wrote at least once and the last write was not cut
        short; not over another process's snapshot) and close the client (idempotent). A failed tombstone is
        counted in ``errors``; readers then see the instance ``unknown`` once its snapshot expires."""
        if self._closed:
            return
        self._closed = True
        task = self._inflight
        finished = True
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), REDIS_TIMEOUT_S + 1.0)
            except TimeoutError:
                finished = False
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        client, self._client = self._client, None
        if client is None:
            return
        if finished and self._writes > 0:
            await self._tombstone(client)
        with contextlib.suppress(Exception):
            await client.aclose()

    async def wait_idle(self) -> None:
        """Wait until no write is in flight."""
        await self._idle.wait()

    def stats(self) -> PublisherStats:
        """The counters (see :class:`PublisherStats`)."""
        return PublisherStats(
            writes=self._writes,
            errors=self._errors,
            skipped=self._skipped,
            last_error=self._last_error,
            connected=self._connected,
            last_write_ms=self._last_write_ms,
            collisions=self._collisions,
            writer=self.writer,
        )

    # --------------------------------------------------------------------------------------------- writes
    def _on_snapshot(self, snap: StatusSnapshot) -> None:
        client = self._client
        if self._closed or client is None:
            return
        if self._inflight is not None and not self._inflight.done():
            self._skipped += 1
            return
        self._idle.clear()
        self._inflight = asyncio.create_task(self._write(snap), name="status-redis-write")

    async def _write(self, snap: StatusSnapshot) -> None:
        seen_ms = snap.taken_ns // 1_000_000
        try:
            body = _encode({"writer": self.writer, **documents.system_status(snap)})
            collided = await self._write_script(
                keys=[self.key, self._index, self._collision_key],
                args=[
                    body,
                    self.writer,
                    self._ttl_ms,
                    seen_ms,
                    snap.instance_id,
                    seen_ms - self._forget_ms,
                    self._forget_ms,
                    1 if self._writes == 0 else 0,
                ],
            )
        except asyncio.CancelledError:
            self._failed("write cancelled at shutdown (Redis too slow)")
            raise
        except Exception as exc:
            self._failed(_describe(exc, self._secrets))
        else:
            self._succeeded(seen_ms)
            if int(collided):
                self._collided()
        finally:
            self._idle.set()

    async def _tombstone(self, client: aioredis.Redis) -> None:
        now_ns = time.time_ns()
        body = _encode(
            {"state": "stopped", "stopped_at": documents.iso(now_ns), "instance_id": self.service.instance_id}
        )
        try:
            written = await client.register_script(_TOMBSTONE_SCRIPT)(
                keys=[self.key, self._index],
                args=[body, self.writer, self._forget_ms, now_ns // 1_000_000, self.service.instance_id],
            )
        except Exception as exc:
            self._failed(_describe(exc, self._secrets))
            return
        if int(written):
            log.info("status: instance %r marked stopped in Redis %s", self.service.instance_id, self.redis)
        else:
            log.warning(
                "status: instance %r not marked stopped in Redis %s: another process writes this instance id",
                self.service.instance_id,
                self.redis,
            )

    def _collided(self) -> None:
        self._collisions += 1
        if self._collisions == 1:
            log.warning(
                "status: another process writes Redis status under the same instance id %r (%s); both keep "
                "writing and readers flag the instance: give each process its own status.instance_id",
                self.service.instance_id,
                self.key,
            )

    def _failed(self, error: str) -> None:
        self._errors += 1
        self._last_error = error
        self._connected = False
        self._outage_errors += 1
        if self._outage_errors == 1:
            log.warning(
                "status: cannot write to Redis %s (%s); retrying at every snapshot, further failures are "
                "counted, not logged, until it works again",
                self.redis,
                error,
            )

    def _succeeded(self, seen_ms: int) -> None:
        self._writes += 1
        self._connected = True
        self._last_write_ms = seen_ms
        if self._outage_errors:
            log.info(
                "status: writing to Redis %s again (after %d failed writes)", self.redis, self._outage_errors
            )
            self._outage_errors = 0


class ClusterStatus:
    """Reads every instance's status from Redis (see the module docstring).

    Args:
        redis_url: as for :class:`RedisStatusPublisher`.
        prefix: key prefix the publishers use.
        ttl_s: the publishers' snapshot lifetime, s (shown in the document; an instance whose snapshot expired
            is ``unknown``); an answer is reused for ``min(1 s, ttl_s / 4)``.
        max_instances: read at most this many instances, the most recently seen first (the rest are counted
            in ``summary.omitted``).
        log_failures: log the first failed read of an outage at WARNING and the recovery at INFO (the
            command line turns it off: it prints the error itself).
        monotonic: clock of the answer cache, s (tests pass a fake one).
    """

    def __init__(
        self,
        redis_url: str,
        *,
        prefix: str,
        ttl_s: float = 15.0,
        max_instances: int = MAX_INSTANCES,
        log_failures: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redact_url(redis_url)
        """The Redis URL without its password."""
        self._url = redis_url
        self._secrets = url_secrets(redis_url)
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.cache_s = max(0.0, min(MAX_CACHE_S, ttl_s / 4))
        """How long an answer is reused, s."""
        self._max = max(1, max_instances)
        self._log = log_failures
        self._monotonic = monotonic
        self._client: aioredis.Redis | None = None
        self._inflight: asyncio.Task[dict[str, Any]] | None = None
        self._cached: dict[str, Any] | None = None
        self._cached_at = 0.0
        self.reads = 0
        """Reads answered from Redis."""
        self.errors = 0
        """Reads that failed (answered with ``error``)."""
        self.shared = 0
        """Calls answered by another call's read (in flight or cached)."""
        self.last_error: str | None = None
        """The latest failure (password removed); ``None`` once a read works again."""

    def stats(self) -> ReaderStats:
        """The counters (see :class:`ReaderStats`)."""
        return ReaderStats(
            reads=self.reads, errors=self.errors, shared=self.shared, last_error=self.last_error
        )

    async def aclose(self) -> None:
        """Cancel the read in flight, forget the cached answer and close the client (idempotent; a later
        :meth:`read` opens a new one)."""
        task, self._inflight = self._inflight, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._cached = None
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def read(self) -> dict[str, Any]:
        """The cluster document; never raises on a Redis failure.

        Calls made while a read is in flight wait for it, and its answer (error answers included) is reused
        for :attr:`cache_s`: the returned document is shared between callers and must not be modified.

        Returns:
            ``{"redis": <url, password removed>, "prefix", "ttl_s", "timestamp": ISO, "instances": [...],
            "summary": {"instances", "live", "unknown", "stopped", "healthy", "collisions", "omitted"}}``, each
            instance ``{"instance_id", "state": "live" | "stopped" | "unknown", "last_seen": ISO, "age_s",
            "healthy", "collision", "status"}`` sorted by instance id (a stopped one has ``stopped_at`` too).
            ``status`` is the instance's ``/api/system/status`` document (``null`` when stopped or when its
            snapshot expired); ``healthy`` is true only for a live instance without a collision whose
            ``exchange_connections.summary.healthy`` is true; ``collision`` is true while two processes write
            the instance id. ``age_s`` is the reader's wall clock minus the instance's last snapshot time
            (>= 0). When Redis cannot be read: ``{"redis", "prefix", "timestamp", "error": "<Type>:
            <message>", "instances": []}``.
        """
        cached = self._cached
        if cached is not None and self._monotonic() - self._cached_at < self.cache_s:
            self.shared += 1
            return cached
        task = self._inflight
        if task is None or task.done():
            task = self._inflight = asyncio.create_task(self._read_and_keep(), name="status-redis-read")
        else:
            self.shared += 1
        return await asyncio.shield(task)  # a caller that goes away does not cancel the others' read

    async def _read_and_keep(self) -> dict[str, Any]:
        doc = await self._read()
        self._cached, self._cached_at = doc, self._monotonic()
        return doc

    async def _read(self) -> dict[str, Any]:
        now_ms = time.time_ns() // 1_000_000
        try:
            if self._client is None:
                self._client = _client(self._url, retries=1)
            client = self._client
            async with client.pipeline(transaction=False) as pipe:
                pipe.zcard(index_key(self.prefix))
                pipe.zrevrange(index_key(self.prefix), 0, self._max - 1, withscores=True)
                total, entries = await pipe.execute()
            ids = [_text(member) for member, _ in entries]
            keys = [status_key(self.prefix, i) for i in ids] + [collision_key(self.prefix, i) for i in ids]
            values: list[bytes | str | None] = list(await client.mget(keys)) if keys else []
        except Exception as exc:
            return self._error(exc, now_ms)
        if self.last_error is not None:
            if self._log:
                log.info("status: reading Redis %s again", self.redis)
            self.last_error = None
        self.reads += 1
        n = len(ids)
        instances = [
            _instance(iid, int(score), value, marker is not None, now_ms)
            for iid, (_, score), value, marker in zip(ids, entries, values[:n], values[n:], strict=True)
        ]
        instances.sort(key=lambda i: str(i["instance_id"]))
        states = [i["state"] for i in instances]
        return {
            "redis": self.redis,
            "prefix": self.prefix,
            "ttl_s": self.ttl_s,
            "timestamp": documents.iso(now_ms * 1_000_000),
            "instances": instances,
            "summary": {
                "instances": len(instances),
                "live": states.count("live"),
                "unknown": states.count("unknown"),
                "stopped": states.count("stopped"),
                "healthy": sum(1 for i in instances if i["healthy"]),
                "collisions": sum(1 for i in instances if i["collision"]),
                "omitted": max(0, int(total) - len(instances)),
            },
        }

    def _error(self, exc: BaseException, now_ms: int) -> dict[str, Any]:
        error = _describe(exc, self._secrets)
        self.errors += 1
        if self.last_error is None and self._log:
            log.warning("status: cannot read Redis %s (%s)", self.redis, error)
        self.last_error = error
        return {
            "redis": self.redis,
            "prefix": self.prefix,
            "timestamp": documents.iso(now_ms * 1_000_000),
            "error": error,
            "instances": [],
        }


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _instance(
    instance_id: str, seen_ms: int, value: bytes | str | None, collision: bool, now_ms: int
) -> dict[str, Any]:
    decoded: dict[str, Any] | None = None
    error: str | None = None
    if value is not None:
        try:
            raw = _decode(value)
        except msgspec.DecodeError as exc:
            error = f"undecodable snapshot: {exc}"
        else:
            if isinstance(raw, dict):
                decoded = raw
            else:
                error = "snapshot is not a JSON object"
    stopped = decoded is not None and decoded.get("state") == "stopped"
    status = None if decoded is None or stopped else decoded
    if status is not None:
        status.pop("writer", None)  # the publisher's token, not part of /api/system/status
    connections = status.get("exchange_connections") if status is not None else None
    summary = connections.get("summary") if isinstance(connections, dict) else None
    state = "stopped" if stopped else "live" if status is not None else "unknown"
    doc: dict[str, Any] = {
        "instance_id": instance_id,
        "state": state,
        "last_seen": documents.iso(seen_ms * 1_000_000),
        "age_s": round(max(0, now_ms - seen_ms) / 1000, 3),
        "healthy": not collision and isinstance(summary, dict) and summary.get("healthy") is True,
        "collision": collision,
        "status": status,
    }
    if stopped and decoded is not None:
        doc["stopped_at"] = decoded.get("stopped_at")
    if error is not None:
        doc["error"] = error
    return doc
