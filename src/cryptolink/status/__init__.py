"""The operating surface: status documents, HTTP API and WebSocket push, dashboard, Prometheus metrics and
Redis status across instances, all fed from one immutable :class:`~cryptolink.status.snapshot.StatusSnapshot`
taken per interval (never on the hot path).

- :mod:`cryptolink.status.snapshot`: the snapshot.
- :mod:`cryptolink.status.documents`: the JSON documents built from it (``/api/system/status`` and the rest).
- :mod:`cryptolink.status.service`: :class:`StatusService`, which takes snapshots, keeps the event ring,
  pushes to WebSocket clients and logs the periodic report.
- :mod:`cryptolink.status.app` / :mod:`cryptolink.status.server`: the FastAPI application and the uvicorn
  server run in the caller's event loop.
- :mod:`cryptolink.status.metrics`: the Prometheus exposition (``/metrics``), built at scrape time
  (:mod:`cryptolink.status.counters` keeps its summed counters monotonic).
- :mod:`cryptolink.status.cluster`: this instance's snapshot in Redis, and every instance's status read back.
- :mod:`cryptolink.status.table`: the tables of ``cryptolink status``.
- :mod:`cryptolink.status.surface`: all of it started and stopped as one piece (what ``run`` and ``demo`` use).
"""
