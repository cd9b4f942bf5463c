"""The status of several instances through Redis.

Every instance with ``status.redis_url`` runs a :class:`RedisStatusPublisher`: after each status snapshot it
writes its monitoring document (:func:`cryptolink.status.documents.system_status`, msgspec JSON) under
``<prefix>:status:<instance_id>`` with a lifetime of ``ttl_s``, and stamps ``<instance_id>`` in the sorted set
``<prefix>:instances`` with the snapshot's wall time in epoch ms (one ``MULTI``/``EXEC``). An instance that stops
writing loses its snapshot after ``ttl_s`` but stays in the index, so readers list it as ``unknown`` until
``forget_after_s`` passes (then it is pruned from the index).

:class:`ClusterStatus` reads every instance of the index (``/api/cluster/status``, ``cryptolink status
--redis``). Neither class ever raises on a Redis failure: the publisher counts it and tries again at the next
snapshot, the reader answers a document with ``error``.

A Redis URL may carry a password; :func:`redact_url` replaces it by ``***`` in every log line and document.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff

from cryptolink.status import documents
from cryptolink.status.service import StatusService
from cryptolink.status.snapshot import StatusSnapshot

__all__ = [
    "DEFAULT_FORGET_AFTER_S",
    "MAX_INSTANCES",
    "REDIS_TIMEOUT_S",
    "ClusterStatus",
    "PublisherStats",
    "RedisStatusPublisher",
    "index_key",
    "redact_url",
    "status_key",
]

log = logging.getLogger("cryptolink.status")

DEFAULT_FORGET_AFTER_S = 86_400.0
"""An instance not seen for this long (s) is pruned from the index (it is no longer listed, not even as
``unknown``)."""

MAX_INSTANCES = 1000
"""At most this many instances (the most recently seen) are read per :meth:`ClusterStatus.read`."""

REDIS_TIMEOUT_S = 2.0
"""Connect and command timeout of every Redis call, s (a hung Redis never holds a write or a read longer)."""

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_SECRET_QUERY_KEYS = frozenset({"password", "pass", "pwd", "auth"})


def status_key(prefix: str, instance_id: str) -> str:
    """The key of one instance's snapshot: ``<prefix>:status:<instance_id>``."""
    return f"{prefix}:status:{instance_id}"


def index_key(prefix: str) -> str:
    """The sorted set of instances (member: instance id, score: last seen, epoch ms): ``<prefix>:instances``."""
    return f"{prefix}:instances"


def redact_url(url: str) -> str:
    """``url`` with its password (user info or ``?password=`` query) replaced by ``***``.

    ``redis://user:secret@host:6379/0`` -> ``redis://user:***@host:6379/0``; a lone user info
    (``redis://secret@host``) is treated as a password too. A URL that cannot be parsed comes back as
    ``<unparseable url>`` (it may hold a secret in an unexpected place).
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        userinfo = f"{user}:***" if colon else "***"
        netloc = f"{userinfo}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _secrets_of(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found = [s for s in (parts.password, parts.username if parts.password is None else None) if s]
    found += [v for k, v in parse_qsl(parts.query) if k.lower() in _SECRET_QUERY_KEYS and v]
    return found


def _describe(exc: BaseException, secrets: list[str]) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _client(url: str, retries: int) -> aioredis.Redis:
    backoff = NoBackoff() if retries == 0 else ExponentialBackoff(cap=0.5, base=0.05)
    return aioredis.Redis.from_url(
        url,
        socket_timeout=REDIS_TIMEOUT_S,
        socket_connect_timeout=REDIS_TIMEOUT_S,
        retry=Retry(backoff, retries),
    )


@dataclass(frozen=True, slots=True)
class PublisherStats:
    """Counters of a :class:`RedisStatusPublisher`.

    Attributes:
        writes: snapshots written.
        errors: writes that failed (Redis unreachable, timeout, refused...).
        skipped: snapshots not written because the previous write was still in flight.
        last_error: the latest failure (``"<Type>: <message>"``, password removed), ``None`` if none yet.
        connected: whether the latest write succeeded (``False`` before the first one).
        last_write_ms: wall time of the latest snapshot written, epoch ms (``None`` before the first).
    """

    writes: int
    errors: int
    skipped: int
    last_error: str | None
    connected: bool
    last_write_ms: int | None


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
            :data:`DEFAULT_FORGET_AFTER_S`, at least ``2 * ttl_s``); the index key itself expires after it too.

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
        self._secrets = _secrets_of(redis_url)
        self.prefix = prefix
        self.key = status_key(prefix, service.instance_id)
        self._index = index_key(prefix)
        self._ttl_ms = max(1, round(ttl_s * 1000))
        self._forget_ms = max(round(forget_after_s * 1000), 2 * self._ttl_ms)
        self._client: aioredis.Redis | None = None
        self._inflight: asyncio.Task[None] | None = None
        self._closed = False
        self._registered = False
        self._outage_errors = 0
        self._writes = 0
        self._errors = 0
        self._skipped = 0
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
        """Let the write in flight finish (it is cancelled after :data:`REDIS_TIMEOUT_S` + 1 s), stop writing
        and close the client (idempotent). The snapshot already written expires after ``ttl_s``."""
        self._closed = True
        task = self._inflight
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), REDIS_TIMEOUT_S + 1.0)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        client, self._client = self._client, None
        if client is not None:
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
        self._inflight = asyncio.create_task(self._write(client, snap), name="status-redis-write")

    async def _write(self, client: aioredis.Redis, snap: StatusSnapshot) -> None:
        seen_ms = snap.taken_ns // 1_000_000
        try:
            body = _encode(documents.system_status(snap))
            async with client.pipeline(transaction=True) as pipe:
                pipe.set(self.key, body, px=self._ttl_ms)
                pipe.zadd(self._index, {snap.instance_id: seen_ms})
                pipe.zremrangebyscore(self._index, "-inf", f"({seen_ms - self._forget_ms}")
                pipe.pexpire(self._index, self._forget_ms)
                await pipe.execute()
        except asyncio.CancelledError:
            self._failed("write cancelled at shutdown (Redis too slow)")
            raise
        except Exception as exc:
            self._failed(_describe(exc, self._secrets))
        else:
            self._succeeded(seen_ms)
        finally:
            self._idle.set()

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
            is ``unknown``).
        max_instances: read at most this many instances, the most recently seen first (the rest are counted
            in ``summary.omitted``).
        log_failures: log the first failed read of an outage at WARNING and the recovery at INFO (the
            command line turns it off: it prints the error itself).
    """

    def __init__(
        self,
        redis_url: str,
        *,
        prefix: str,
        ttl_s: float = 15.0,
        max_instances: int = MAX_INSTANCES,
        log_failures: bool = True,
    ) -> None:
        self.redis = redact_url(redis_url)
        """The Redis URL without its password."""
        self._url = redis_url
        self._secrets = _secrets_of(redis_url)
        self.prefix = prefix
        self.ttl_s = ttl_s
        self._max = max(1, max_instances)
        self._log = log_failures
        self._client: aioredis.Redis | None = None
        self.reads = 0
        """Reads answered from Redis."""
        self.errors = 0
        """Reads that failed (answered with ``error``)."""
        self.last_error: str | None = None
        """The latest failure (password removed)."""

    async def aclose(self) -> None:
        """Close the client (idempotent; a later :meth:`read` opens a new one)."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def read(self) -> dict[str, Any]:
        """The cluster document; never raises on a Redis failure.

        Returns:
            ``{"redis": <url, password removed>, "prefix", "ttl_s", "timestamp": ISO, "instances": [...],
            "summary": {"instances", "live", "unknown", "healthy", "omitted"}}``, each instance
            ``{"instance_id", "state": "live" | "unknown", "last_seen": ISO, "age_s", "healthy", "status"}``
            sorted by instance id. ``status`` is the instance's ``/api/system/status`` document (``null`` when
            its snapshot expired); ``healthy`` is true only for a live instance whose
            ``exchange_connections.summary.healthy`` is true. ``age_s`` is the reader's wall clock minus the
            instance's last snapshot time (>= 0). When Redis cannot be read: ``{"redis", "prefix",
            "timestamp", "error": "<Type>: <message>", "instances": []}``.
        """
        now_ms = time.time_ns() // 1_000_000
        try:
            if self._client is None:
                self._client = _client(self._url, retries=1)
            client = self._client
            async with client.pipeline(transaction=False) as pipe:
                pipe.zcard(index_key(self.prefix))
                pipe.zrevrange(index_key(self.prefix), 0, self._max - 1, withscores=True)
                total, entries = await pipe.execute()
            keys = [status_key(self.prefix, _text(member)) for member, _ in entries]
            values: list[bytes | str | None] = list(await client.mget(keys)) if keys else []
        except Exception as exc:
            return self._error(exc, now_ms)
        if self.last_error is not None and self._log:
            log.info("status: reading Redis %s again", self.redis)
            self.last_error = None
        self.reads += 1
        instances = [
            _instance(_text(member), int(score), value, now_ms)
            for (member, score), value in zip(entries, values, strict=True)
        ]
        instances.sort(key=lambda i: str(i["instance_id"]))
        live = sum(1 for i in instances if i["state"] == "live")
        return {
            "redis": self.redis,
            "prefix": self.prefix,
            "ttl_s": self.ttl_s,
            "timestamp": documents.iso(now_ms * 1_000_000),
            "instances": instances,
            "summary": {
                "instances": len(instances),
                "live": live,
                "unknown": len(instances) - live,
                "healthy": sum(1 for i in instances if i["healthy"]),
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


def _instance(instance_id: str, seen_ms: int, value: bytes | str | None, now_ms: int) -> dict[str, Any]:
    status: dict[str, Any] | None = None
    error: str | None = None
    if value is not None:
        try:
            decoded = _decode(value)
        except msgspec.DecodeError as exc:
            error = f"undecodable snapshot: {exc}"
        else:
            if isinstance(decoded, dict):
                status = decoded
            else:
                error = "snapshot is not a JSON object"
    connections = status.get("exchange_connections") if status is not None else None
    summary = connections.get("summary") if isinstance(connections, dict) else None
    doc: dict[str, Any] = {
        "instance_id": instance_id,
        "state": "live" if status is not None else "unknown",
        "last_seen": documents.iso(seen_ms * 1_000_000),
        "age_s": round(max(0, now_ms - seen_ms) / 1000, 3),
        "healthy": isinstance(summary, dict) and summary.get("healthy") is True,
        "status": status,
    }
    if error is not None:
        doc["error"] = error
    return doc
