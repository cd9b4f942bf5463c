""":class:`StatusSurface`: the whole operating surface of one process, started and stopped as one piece:
the :class:`~cryptolink.status.service.StatusService` (snapshots, events, push, periodic report), the HTTP
server with the API, dashboard and ``/metrics``, and (with ``status.redis_url``) the Redis status publisher
and cluster reader.

Without the HTTP server (``serve_http=False``: ``status.enabled: false``, ``--no-status``) everything else still
runs: the snapshots, the periodic connection report in the log and the Redis status.
"""

from __future__ import annotations

import logging
import os

from cryptolink.config import StatusConfig
from cryptolink.manager import ExchangeManager
from cryptolink.status.app import ClusterReader, MetricsRenderer, create_app
from cryptolink.status.cluster import ClusterStatus, RedisStatusPublisher
from cryptolink.status.host import HostSampler
from cryptolink.status.metrics import MetricsExporter
from cryptolink.status.server import StatusServer
from cryptolink.status.service import (
    BudgetsProvider,
    NatsProvider,
    RestProvider,
    StatusService,
    WorkerProvider,
)

__all__ = ["StatusSurface"]

log = logging.getLogger("cryptolink.status")


class StatusSurface:
    """See the module docstring.

    Args:
        manager: the manager whose connections are shown.
        config: the ``status`` section.
        disk_path: the filesystem whose space is reported (the output directory).
        serve_http: start the HTTP server (``False``: snapshots, report and Redis only).
        rest: the REST manager's statistics provider (``RestManager.stats``; ``None``: no REST manager): its
            members, groups and budgets go into every snapshot, ``/api/rest`` and ``/metrics``.
        budgets: the process's rate budgets provider (``RateBudgets.stats``), used when there is no REST
            manager (see :class:`~cryptolink.status.service.StatusService`).
        nats: the NATS sink's counters provider (``NatsSink.stats``): ``/api/nats``, ``nats`` in
            ``/api/system/status`` (and so in the cluster view), the ``cryptolink_nats_*`` metrics.
        worker: the scale-out worker's state provider (``Worker.status``): ``worker`` in ``/api/system/status``
            and the cluster view, ``/api/nats``, the ``cryptolink_worker_*`` metrics.
    """

    def __init__(
        self,
        manager: ExchangeManager,
        config: StatusConfig,
        *,
        disk_path: str | os.PathLike[str] = ".",
        serve_http: bool = True,
        rest: RestProvider | None = None,
        budgets: BudgetsProvider | None = None,
        nats: NatsProvider | None = None,
        worker: WorkerProvider | None = None,
    ) -> None:
        self.config = config
        self.service = StatusService(
            manager,
            config,
            host=HostSampler(disk_path),
            rest=rest,
            budgets=budgets,
            nats=nats,
            worker=worker,
        )
        self.cluster: ClusterReader | None = None
        self.server: StatusServer | None = None
        self._serve_http = serve_http
        # Redis (status.redis_url): this instance's snapshot out, every instance's status in
        self.redis_publisher: RedisStatusPublisher | None = None
        self._cluster_status: ClusterStatus | None = None
        if config.redis_url is not None:
            url = config.redis_url.get_secret_value()
            self.redis_publisher = RedisStatusPublisher(
                self.service, url, prefix=config.redis_prefix, ttl_s=config.redis_ttl_s
            )
            self._cluster_status = ClusterStatus(url, prefix=config.redis_prefix, ttl_s=config.redis_ttl_s)
            self.cluster = self._cluster_status
        self.metrics: MetricsRenderer | None = MetricsExporter(
            self.service,
            per_symbol=config.per_symbol_metrics,
            redis=self.redis_publisher,
            cluster=self._cluster_status,
        )

    async def start(self) -> None:
        """Start the Redis publisher (with ``status.redis_url``), the snapshot loop, then the server.

        Raises:
            StatusBindError: the address cannot be bound (call :meth:`stop`: it stops what did start).
            ValueError: a Redis URL redis-py cannot use (call :meth:`stop`).
        """
        if self.redis_publisher is not None:  # before the loop: its first snapshot is written too
            await self.redis_publisher.start()
        await self.service.start()
        if self._serve_http:
            token = self.config.token.get_secret_value() if self.config.token is not None else None
            app = create_app(
                self.service,
                token=token,
                metrics=self.metrics,
                cluster=self.cluster,
                bound_host=self.config.host,
            )
            self.server = StatusServer(app, self.config.host, self.config.port)
            await self.server.start()

    async def stop(self) -> None:
        """Close the WebSocket clients (code 1001), stop the server, the loop, then the Redis publisher and
        reader (idempotent). Never raises: a part that fails to stop is logged and the others still stop."""
        await self.service.close_clients()
        if self.server is not None:
            await self.server.stop()
        await self.service.stop()
        for name, part in (("Redis publisher", self.redis_publisher), ("Redis reader", self._cluster_status)):
            if part is None:  # the publisher after the loop: its last snapshot is written too
                continue
            try:
                await part.aclose()
            except Exception:
                log.exception("status: closing the %s failed", name)
