"""Scale-out over workers sharing one configuration through NATS KV leases (issue 10).

- :mod:`cryptolink.cluster.shards`: the configuration cut into shards (:func:`plan_shards`), and its
  fingerprint.
- :mod:`cryptolink.cluster.leases`: leases on NATS KV (create / compare-and-swap, TTL, fencing deadlines).
- :mod:`cryptolink.cluster.worker`: the worker that claims a fair share of the shards and runs them on an
  :class:`~cryptolink.manager.ExchangeManager`.
"""

from __future__ import annotations

from cryptolink.cluster.leases import (
    ClusterError,
    Holder,
    Lease,
    LeaseLost,
    LeaseStore,
    LeaseStoreError,
    LeaseValue,
    open_bucket,
)
from cryptolink.cluster.shards import Shard, config_fingerprint, plan_shards
from cryptolink.cluster.worker import Worker, WorkerStatus, idle_config

__all__ = [
    "ClusterError",
    "Holder",
    "Lease",
    "LeaseLost",
    "LeaseStore",
    "LeaseStoreError",
    "LeaseValue",
    "Shard",
    "Worker",
    "WorkerStatus",
    "config_fingerprint",
    "idle_config",
    "open_bucket",
    "plan_shards",
]
